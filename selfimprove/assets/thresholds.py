"""Study asset `scaling/<study>/thresholds` (paper §6.1): the shape of each member's gap-vs-threshold curve
and whether the best threshold transfers across the members (sizes of a family, or tasks on one model).

Reads each member's round-0 `threshold_sweep` and writes one row per verifier x axis x member (stage
`thresholds`, partition `experiment=<study>`): the member's best setting with its gap and CI, the curve's
shape (`sweeps.shape`), the family setting (highest mean gap over members) and whether it transfers to the
member (`sweeps.transfer`), and `transfer_from`: every other member's best setting applied to this one
(`sweeps.pairwise_transfer`). Verdicts, decided on the CIs:
- the paper's shapes: an interior peak for MC and the tournament, a rising curve for CoT-Score, judged on
  each member with a non-trivial curve (its best gap's CI above 0);
- the best threshold transfers across the members, per verifier and axis: the family setting to all of
  them, and pair by pair (one member's best setting to another).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg
import pyarrow as pa

from selfimprove import sweeps
from selfimprove.assets import plots
from selfimprove.assets.common import preview, study_group, table_digest
from selfimprove.assets.scaling import MemberRef, write_study_table
from selfimprove.render import ci, md_table
from selfimprove.resources.io_manager import WarehouseResource

CODE_VERSION = "3"  # 2: transfer_from (pairwise transfer); 3: with the target's best over the shared settings
# The shapes §6.1 reports, per verifier (the others are measured, not judged).
PAPER_SHAPES = {"mc": "interior peak", "tournament": "interior peak", "cot_score": "rising"}

Row = dict[str, Any]


def thresholds_table(refs: Sequence[MemberRef], sweeps_tables: Sequence[pa.Table]) -> pa.Table:
    rows: list[Row] = []
    for ref, table in zip(refs, sweeps_tables, strict=True):
        rows += [{**r, "member": ref.name, "size": ref.label or ref.name} for r in table.to_pylist()]
    out: list[Row] = []
    for (verifier, axis), curve_rows in _groups(rows).items():
        fam = sweeps.transfer(curve_rows, member_key="size")
        pairs = sweeps.pairwise_transfer(curve_rows, member_key="size")
        for size, mine in _by(curve_rows, "size").items():
            best = max(mine, key=sweeps.rank)
            shape = sweeps.shape(mine)
            per = fam.get("members", {}).get(size, {})
            out.append(
                {
                    "verifier": verifier,
                    "axis": axis,
                    "member": best["member"],
                    "size": size,
                    "best_setting": best["setting"],
                    "best_gap": best["gap"],
                    "best_gap_lo": best["gap_lo"],
                    "best_gap_hi": best["gap_hi"],
                    "best_kept_fraction": best["kept_fraction"],
                    "shape": shape.label,
                    "shape_evidence": shape.evidence,
                    "paper_shape": PAPER_SHAPES.get(verifier),
                    "family_setting": fam.get("family_setting"),
                    "gap_at_family_setting": per.get("gap_at_family"),
                    "transfers": per.get("transfers"),
                    "transfer_from": [_from(p) for p in pairs if p["target"] == size],
                }
            )
    return pa.Table.from_pylist(out)


_FROM = (
    "source",
    "source_best",
    "target_best",
    "target_best_gap",
    "gap_at_source_best",
    "gap_at_source_best_lo",
    "gap_at_source_best_hi",
    "transfers",
)


def _from(pair: Row) -> Row:
    return {k: pair[k] for k in _FROM}


def transfer_pairs(rows: Sequence[Row]) -> list[Row]:
    """The `transfer_from` lists of a thresholds table as one row per verifier x axis x (source, target)."""
    out = []
    for r in rows:
        for p in r.get("transfer_from") or []:
            out.append(
                {
                    "verifier": r["verifier"],
                    "axis": r["axis"],
                    "from": p["source"],
                    "to": r["size"],
                    "best at from": p["source_best"],
                    "best at to": p["target_best"],  # over the shared settings `transfers` was judged on
                    "to's best gap": p["target_best_gap"],
                    "to's gap at from's best [CI]": ci(p, "gap_at_source_best"),
                    "transfers": "yes" if p["transfers"] else "no",
                }
            )
    return out


def _by(rows: Sequence[Row], key: str) -> dict[Any, list[Row]]:
    out: dict[Any, list[Row]] = {}
    for r in rows:
        out.setdefault(r[key], []).append(r)
    return out


def _groups(rows: Sequence[Row]) -> dict[tuple[str, str], list[Row]]:
    out: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        out.setdefault((r["verifier"], r["axis"]), []).append(r)
    return out


def threshold_verdicts(rows: Sequence[Row]) -> list[Row]:
    """Per verifier x axis: the paper's shape on the members whose best gap's CI lies above 0, and transfer."""
    out = []
    for (verifier, axis), group in _groups(rows).items():
        live = [r for r in group if r["best_gap_lo"] > 0]
        expected = PAPER_SHAPES.get(verifier)
        shape_holds = None if expected is None or not live else all(r["shape"] == expected for r in live)
        transfers = [r["transfers"] for r in group if r["transfers"] is not None]
        pairs = [p["transfers"] for r in group for p in r.get("transfer_from") or []]
        out.append(
            {
                "verifier": verifier,
                "axis": axis,
                "paper_shape": expected or "",
                "shapes": ", ".join(f"{r['size']}: {r['shape']}" for r in group),
                "members_with_a_gap": len(live),
                "shape_holds": {True: "holds", False: "does not hold", None: "undecided"}[shape_holds],
                "family_setting": group[0]["family_setting"],
                "best_settings": ", ".join(f"{r['size']}: {r['best_setting']:g}" for r in group),
                "transfer": "undecided" if len(transfers) < 2 else "holds" if all(transfers) else "does not hold",
                "pairs_transferring": f"{sum(pairs)} / {len(pairs)}" if pairs else "",
            }
        )
    return out


VERDICT_COLUMNS = ["verifier", "axis", "paper_shape", "shape_holds", "shapes", "best_settings", "family_setting",
                   "transfer", "pairs_transferring"]  # fmt: skip


def thresholds_markdown(rows: Sequence[Row]) -> tuple[str, str]:
    """A study's `thresholds` rows as two markdown tables: the verdicts (shapes, transfer) and each member's best
    setting on every other member ("" when no pair was measured)."""
    verdicts = md_table(threshold_verdicts(rows), VERDICT_COLUMNS, float_format="g")
    pairs = transfer_pairs(rows)
    return verdicts, md_table(pairs, list(pairs[0]), float_format="g") if pairs else ""


def thresholds_asset(study: str, refs: Sequence[MemberRef]) -> dg.AssetsDefinition:
    ins = {f"sweep_{i}": dg.AssetIn(dg.AssetKey([r.name, "round_0", "threshold_sweep"])) for i, r in enumerate(refs)}

    @dg.asset(
        key=dg.AssetKey([study, "thresholds"]),
        ins=ins,
        group_name=study_group(study),
        kinds={"parquet"},
        code_version=CODE_VERSION,
        description=f"Study {study}: each member's best filter threshold and curve shape per verifier (paper §6.1), "
        "and whether the best threshold transfers across the members, with verdicts.",
    )
    def thresholds(warehouse: WarehouseResource, **tables: pa.Table) -> dg.MaterializeResult:
        sweep_tables = [tables[f"sweep_{i}"] for i in range(len(refs))]
        table = thresholds_table(refs, sweep_tables)
        curves = []
        for ref, t in zip(refs, sweep_tables, strict=True):
            curves += [{**r, "line": ref.label or ref.name} for r in t.to_pylist() if r["axis"] == "alpha"]
        png = plots.sweep_figure(curves, f"{study}: gap against the per-prompt quantile, per member", line_key="line")
        table, meta = write_study_table(warehouse, "thresholds", study, table, "thresholds", png)
        verdicts_md, pairs_md = thresholds_markdown(table.to_pylist())
        meta["verdicts"] = dg.MetadataValue.md(verdicts_md)
        if pairs_md:
            meta["pairwise_transfer"] = dg.MetadataValue.md(pairs_md)
        meta["preview"] = dg.MetadataValue.md(
            preview(table, ["verifier", "axis", "size", "best_setting", "best_gap", "shape", "transfers"], rows=40)
        )
        return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(table_digest(table)))

    return thresholds
