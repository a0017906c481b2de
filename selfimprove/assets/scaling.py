"""Study assets: the relative gap against pre-training FLOPs (paper §4, Fig. 1) and the cross-verification
matrix, generator size x verifier size (§4.2, Fig. 3).

Both read the members' round-0 `gap` and `base_model` tables and write one table each to the warehouse
(stage `relative_gap` or `cross_verification`, partition `experiment=<study>`; the member experiment is
the `member` column), plus a PNG under `_artifacts/plots/study=<study>/`. They return a
`MaterializeResult`, so no IO manager is involved and their keys can be `scaling/<study>/<table>`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa

from selfimprove import metrics
from selfimprove.assets import plots
from selfimprove.assets.common import preview, study_group, table_digest, verdict_metadata
from selfimprove.render import md_table, num
from selfimprove.resources.io_manager import WarehouseResource
from selfimprove.verdicts import verdicts

CODE_VERSION = "1"
GAP_COLUMNS = (
    "verifier",
    "filter",
    "rule",
    "j_f",
    "j_fw",
    "gap",
    "gap_lo",
    "gap_hi",
    "relative_gap",
    "relative_gap_lo",
    "relative_gap_hi",
    "n_prompts",
    "n_excluded",
    "auroc_within_prompt",
)
FIT_COLUMNS = ("n_sizes", "slope", "intercept", "r2", "spearman", "relative_gap_fit")

Row = dict[str, Any]


@dataclass(frozen=True)
class MemberRef:
    """A member experiment of a study: its name, a label for plots, and FLOPs overriding the checkpoint's."""

    name: str
    label: str | None = None
    flops: float | None = None


@dataclass(frozen=True)
class CellRef:
    """The experiment holding one cross-verification cell's round-0 gap."""

    name: str
    generator: str  # generator label
    verifier: str  # verifier label
    flops: float | None = None  # FLOPs override of the model (diagonal cells, whose generator is the verifier)


def model_info(base: Mapping[str, Any], flops: float | None = None, label: str | None = None) -> Row:
    """Size label, parameters and pre-training FLOPs (the override, else the base model's) of a member."""
    f = flops if flops is not None else base.get("flops")
    f = None if f is None or (isinstance(f, float) and math.isnan(f)) else float(f)
    return {
        "size": label or base.get("size"),
        "n_params": base.get("n_params"),
        "flops": f,
        "log10_flops": math.log10(f) if f and f > 0 else math.nan,
    }


def member_rows(ref: MemberRef, gap: pa.Table, base: Mapping[str, Any]) -> list[Row]:
    """One row per verifier x filter of the member's round-0 gap, with its model's size and FLOPs."""
    info = model_info(base, ref.flops, ref.label)
    return [{"member": ref.name, **info, **{c: g.get(c) for c in GAP_COLUMNS}} for g in gap.to_pylist()]


def _fit(points: Sequence[Row]) -> Row:
    pts = [r for r in points if not (math.isnan(num(r["log10_flops"])) or math.isnan(num(r["relative_gap"])))]
    x = [num(r["log10_flops"]) for r in pts]
    y = [num(r["relative_gap"]) for r in pts]
    out: Row = {"n_sizes": len(pts), "slope": math.nan, "intercept": math.nan, "r2": math.nan, "spearman": math.nan}
    if len(set(x)) >= 2:
        out["slope"], out["intercept"], out["r2"] = metrics.linear_fit(x, y)
        out["spearman"] = metrics.spearman(x, y)
    return out


def add_fits(rows: Sequence[Row]) -> list[Row]:
    """Each row plus the linear fit of relative gap on log10 FLOPs over its (verifier, filter) group.

    Adds `n_sizes` (points with FLOPs and a relative gap), `slope`, `intercept`, `r2` (metrics.linear_fit;
    NaN with fewer than 2 distinct FLOPs), `spearman` (rho of log10 FLOPs and relative gap) and
    `relative_gap_fit` (the fitted value at the row's FLOPs).
    """
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r["verifier"], r["filter"]), []).append(r)
    fits = {k: _fit(v) for k, v in groups.items()}
    out = []
    for r in rows:
        fit = fits[(r["verifier"], r["filter"])]
        at = fit["slope"] * num(r["log10_flops"]) + fit["intercept"]
        out.append({**r, **fit, "relative_gap_fit": at})
    return out


def fit_summary(rows: Sequence[Row]) -> list[Row]:
    """One row per (verifier, filter) with the fit columns of `add_fits`."""
    seen: dict[tuple[str, str], Row] = {}
    for r in rows:
        seen.setdefault((r["verifier"], r["filter"]), {"verifier": r["verifier"], "filter": r["filter"]} | _pick(r))
    return list(seen.values())


def _pick(r: Row) -> Row:
    return {c: r[c] for c in FIT_COLUMNS if c != "relative_gap_fit"}


def relative_gap_table(refs: Sequence[MemberRef], gaps: Sequence[pa.Table], bases: Sequence[Mapping]) -> pa.Table:
    """The study's relative-gap table: every member's round-0 gap rows with size, FLOPs and the fits."""
    rows = [r for ref, g, b in zip(refs, gaps, bases, strict=True) for r in member_rows(ref, g, b)]
    return pa.Table.from_pylist(add_fits(rows))


def cross_rows(cells: Sequence[CellRef], gaps: Sequence[pa.Table], flops: Mapping[str, float | None]) -> list[Row]:
    """One row per cell x verification method x filter (the oracle and the majority vote, which ignore the
    verifier model, left out)."""
    rows = []
    for cell, gap in zip(cells, gaps, strict=True):
        for g in gap.to_pylist():
            if g["verifier"] in ("oracle", "majority"):
                continue
            rows.append(
                {
                    "generator": cell.generator,
                    "verifier_model": cell.verifier,
                    "self_verification": cell.generator == cell.verifier,
                    "generator_flops": flops.get(cell.generator),
                    "verifier_flops": flops.get(cell.verifier),
                    "member": cell.name,
                    **{c: g.get(c) for c in GAP_COLUMNS},
                }
            )
    return rows


def cross_matrices(
    rows: Sequence[Row], order: Sequence[str], filter_kind: str
) -> dict[str, tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray]]:
    """Per method (of `filter_kind`): (generators, verifiers, gap, gap_lo, gap_hi), (G, V) arrays, NaN if absent."""
    index = {x: i for i, x in enumerate(order)}
    out = {}
    for m in dict.fromkeys(r["verifier"] for r in rows if r["filter"] == filter_kind):
        mats = [np.full((len(order), len(order)), np.nan) for _ in range(3)]
        for r in rows:
            if r["verifier"] == m and r["filter"] == filter_kind:
                i, j = index[r["generator"]], index[r["verifier_model"]]
                for mat, key in zip(mats, ("gap", "gap_lo", "gap_hi"), strict=True):
                    mat[i, j] = num(r[key])
        out[m] = (list(order), list(order), *mats)
    return out


def write_study_table(
    warehouse: WarehouseResource, stage: str, study: str, table: pa.Table, figure: str, png: bytes
) -> tuple[pa.Table, dict[str, Any]]:
    """Write a study table (partition `experiment=<study>`) with its figure's path in `plot`; the metadata."""
    wh = warehouse.get()
    rel = plots.artifact_path("study", study, figure)
    url = wh.write_bytes(rel, png)
    table = table.append_column("plot", pa.array([rel] * table.num_rows, pa.string()))
    written = wh.write(stage, table, study)
    meta: dict[str, Any] = {
        "path": dg.MetadataValue.path(written.path),
        "dagster/row_count": written.num_rows,
        f"plot_{figure}": dg.MetadataValue.md(plots.md_image(png, figure)),
        f"plot_path_{figure}": dg.MetadataValue.path(url),
    }
    return table, meta


def relative_gap_asset(
    study: str,
    description: str,
    refs: Sequence[MemberRef],
    verifier: str = "cot_score",
    filter_kind: str = "quantile",
    min_sizes: int = 4,
) -> dg.AssetsDefinition:
    ins = {f"gap_{i}": dg.AssetIn(dg.AssetKey([r.name, "round_0", "gap"])) for i, r in enumerate(refs)}
    ins |= {f"base_model_{i}": dg.AssetIn(dg.AssetKey([r.name, "base_model"])) for i, r in enumerate(refs)}

    @dg.asset(
        key=dg.AssetKey([study, "relative_gap"]),
        ins=ins,
        group_name=study_group(study),
        kinds={"parquet"},
        code_version=CODE_VERSION,
        description=(
            f"Study {study}: each member's round-0 gap and relative gap with CIs against log10 pre-training "
            "FLOPs, the linear fit and Spearman rho per verifier x filter, a plot, and the scaling verdict. "
            + description
        ).strip(),
    )
    def relative_gap(warehouse: WarehouseResource, **tables: pa.Table) -> dg.MaterializeResult:
        table = relative_gap_table(
            refs,
            [tables[f"gap_{i}"] for i in range(len(refs))],
            [tables[f"base_model_{i}"].to_pylist()[0] for i in range(len(refs))],
        )
        rows = table.to_pylist()
        title = f"{study}: relative gap vs pre-training FLOPs ({filter_kind} filter)"
        png = plots.scaling_figure(rows, filter_kind, title)
        table, meta = write_study_table(warehouse, "relative_gap", study, table, "relative_gap", png)
        fits = fit_summary(rows)
        fit_columns = ["verifier", "filter", *FIT_COLUMNS[:-1]]
        meta["fits"] = dg.MetadataValue.md(md_table(fits, fit_columns, float_format=".4g"))
        meta["preview"] = dg.MetadataValue.md(
            preview(table, ["member", "size", "flops", "verifier", "filter", "gap", "relative_gap"], rows=20)
        )
        found = verdicts(scaling=rows, verifier=verifier, filter=filter_kind, min_sizes=min_sizes)
        meta.update(verdict_metadata(found))
        for f in fits:
            if f["verifier"] == verifier and f["filter"] == filter_kind:
                meta |= {k: round(num(f[k]), 6) for k in ("slope", "intercept", "r2", "spearman")}
        return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(table_digest(table)))

    return relative_gap


def cross_verification_asset(
    study: str, order: Sequence[str], diagonal: Sequence[CellRef], cells: Sequence[CellRef], filter_kind: str
) -> dg.AssetsDefinition:
    """`diagonal` holds each label's self-verifying member (its base model gives the label's FLOPs)."""
    everything = [*diagonal, *cells]
    ins = {f"gap_{i}": dg.AssetIn(dg.AssetKey([c.name, "round_0", "gap"])) for i, c in enumerate(everything)}
    ins |= {f"base_model_{i}": dg.AssetIn(dg.AssetKey([c.name, "base_model"])) for i, c in enumerate(diagonal)}

    @dg.asset(
        key=dg.AssetKey([study, "cross_verification"]),
        ins=ins,
        group_name=study_group(study),
        kinds={"parquet"},
        code_version=CODE_VERSION,
        description=(
            f"Study {study}: the round-0 gap of every generator size verified by every verifier size "
            "(same samples per generator), with CIs, and a heatmap per verification method."
        ),
    )
    def cross_verification(warehouse: WarehouseResource, **tables: pa.Table) -> dg.MaterializeResult:
        flops = {
            c.generator: model_info(tables[f"base_model_{i}"].to_pylist()[0], c.flops)["flops"]
            for i, c in enumerate(diagonal)
        }
        rows = cross_rows(everything, [tables[f"gap_{i}"] for i in range(len(everything))], flops)
        table = pa.Table.from_pylist(rows)
        png = plots.cross_heatmap_figure(
            cross_matrices(rows, order, filter_kind), f"{study}: gap, generator x verifier ({filter_kind} filter)"
        )
        table, meta = write_study_table(warehouse, "cross_verification", study, table, "cross_verification", png)
        meta["preview"] = dg.MetadataValue.md(
            preview(table, ["generator", "verifier_model", "verifier", "filter", "gap", "gap_lo", "gap_hi"], rows=30)
        )
        return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(table_digest(table)))

    return cross_verification
