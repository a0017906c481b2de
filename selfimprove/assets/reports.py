"""The report asset: one row per round (accuracy, gap, held-out accuracy, pass@k, diversity), its
figures, and the verdicts on the paper's iterative claims (§5), each decided on CIs.

`report_rows` and `verdicts` are plain functions; the asset renders the figures (`plots.py`), writes
them to `<warehouse>/_artifacts/plots/experiment=E/`, lists their paths in the table's `plots` column
and shows them inline in the asset's metadata.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa

from selfimprove import metrics, voting
from selfimprove.assets import plots
from selfimprove.assets.common import Experiment, output, verdict_metadata
from selfimprove.assets.evals import accuracy
from selfimprove.assets.gaps import configured_row, headline
from selfimprove.assets.scoring import MAJORITY, answer_classes, method_scores
from selfimprove.render import md_table, md_transposed
from selfimprove.resources.io_manager import WarehouseResource
from selfimprove.verdicts import mean_ci, paired_change, verdicts

CODE_VERSION = "3"  # 2: pass@k for every k, CIs of pass@N and of its change, diversity, plots; 3: maj@k, majority gap
_PASS_AT = re.compile(r"pass_at_(\d+)")
_MAJ_AT = re.compile(r"maj_at_(\d+)")  # maj@k for every k: in the table, left out of `markdown` (maj_at_n stays)
FIGURES = ("accuracy_gap", "heldout", "pass_at_k", "score_histograms")
# Columns `markdown` leaves out by default (CI bounds of the diversity statistics, the plot paths).
DETAIL_COLUMNS = (
    "relative_gap_lo",
    "relative_gap_hi",
    "pass_at_n_lo",
    "pass_at_n_hi",
    "pass_at_n_change_lo",
    "pass_at_n_change_hi",
    "spread",
    "spread_change",
    "spread_change_lo",
    "spread_change_hi",
    "majority_gap_lo",
    "majority_gap_hi",
)

Row = dict[str, Any]


# --------------------------------------------------------------------------- per-round statistics


def per_prompt_pass_at(prompt_ids: Sequence[Hashable], correct: Sequence[Any], k: int) -> dict[Hashable, float]:
    """Unbiased pass@k of each prompt (its n samples, c correct), keyed by prompt id."""
    codes, uniq = metrics.factorize(np.asarray(prompt_ids, dtype=object))
    c = np.asarray(correct, dtype=float) > 0.5
    n_g = np.bincount(codes, minlength=uniq.size)
    c_g = np.bincount(codes, weights=c, minlength=uniq.size).astype(int)
    return {
        p: metrics.pass_at_k(int(n), int(m), min(k, int(n))) for p, n, m in zip(uniq.tolist(), n_g, c_g, strict=True)
    }


@dataclass(frozen=True)
class RoundSamples:
    """What the report needs from one round's generations."""

    curve: dict[int, float]  # pass@k for k = 1, 2, 4, ..., N
    pass_n: dict[Hashable, float]  # per-prompt pass@N
    spread: dict[Hashable, float]  # per-prompt pass@N - pass@1
    distinct: float  # mean distinct non-null answers per prompt
    maj: dict[int, float]  # maj@k for the same ks (majority vote over answer classes; empty without classes)

    @classmethod
    def of(cls, generations: pa.Table, classes: np.ndarray | None = None) -> RoundSamples:
        ids = generations.column("prompt_id").to_pylist()
        correct = np.asarray(generations.column("correct").to_pylist(), dtype=float)
        curve = metrics.pass_at_k_curve(ids, correct)
        n = max(curve)
        pass_n = per_prompt_pass_at(ids, correct, n)
        pass_1 = per_prompt_pass_at(ids, correct, 1)
        return cls(
            curve=curve,
            pass_n=pass_n,
            spread={p: pass_n[p] - pass_1[p] for p in pass_n},
            distinct=metrics.distinct_answers(ids, generations.column("answer").to_pylist()),
            maj={} if classes is None else voting.maj_at_k_curve(ids, classes, correct, list(curve)),
        )


def report_rows(
    rounds: int,
    gaps: list[pa.Table],
    evals: list[pa.Table],
    generations: list[pa.Table],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    classes: list[np.ndarray] | None = None,
) -> pa.Table:
    """R rounds of gaps and generations, and R + 1 evals (the last one after the final round).

    Each generating round adds the configured verifier's gap statistics, pass@k for k = 1, 2, 4, ..., N
    (`pass_at_<k>`, and `pass_at_n` = pass@N), a prompt-bootstrap CI of pass@N, its change since round 0
    (`pass_at_n_change`, paired over prompts), the same for `spread` = pass@N - pass@1, and
    `distinct_answers` (mean distinct final answers per prompt). With the rounds' answer `classes`
    (`scoring.answer_classes`), also maj@k for the same ks (`maj_at_<k>`, `maj_at_n`), and the majority
    vote's gap from the gap table (`majority_gap` with its CI: maj@N - J(f)) beside the verifier's.
    """
    samples = [RoundSamples.of(g, classes[r] if classes else None) for r, g in enumerate(generations[:rounds])]
    rows: list[Row] = []
    for r in range(rounds + 1):
        row: Row = {
            "round": r,
            "eval_greedy": accuracy(evals[r], "greedy"),
            "eval_sampled": accuracy(evals[r], "sampled"),
        }
        if r < rounds:
            row.update(headline(gaps[r]))
            configured = configured_row(gaps[r])
            row["relative_gap_lo"] = configured["relative_gap_lo"]
            row["relative_gap_hi"] = configured["relative_gap_hi"]
            s, s0 = samples[r], samples[0]
            for k, v in s.curve.items():
                row[f"pass_at_{k}"] = v
            row["pass_at_n"] = s.curve[max(s.curve)]
            ids = list(s.pass_n)
            row["pass_at_n_lo"], row["pass_at_n_hi"] = mean_ci(list(s.pass_n.values()), ids, n_boot, seed)
            row["spread"] = float(np.mean(list(s.spread.values())))
            if r > 0:
                change = paired_change(s.pass_n, s0.pass_n, n_boot, seed)
                row["pass_at_n_change"], row["pass_at_n_change_lo"], row["pass_at_n_change_hi"] = change
                change = paired_change(s.spread, s0.spread, n_boot, seed)
                row["spread_change"], row["spread_change_lo"], row["spread_change_hi"] = change
            row["distinct_answers"] = s.distinct
            for k, v in s.maj.items():
                row[f"maj_at_{k}"] = v
            if s.maj:
                row["maj_at_n"] = s.maj[max(s.maj)]
            majority = next((x for x in gaps[r].to_pylist() if x["verifier"] == MAJORITY), None)
            if majority is not None:
                row["majority_gap"] = majority["gap"]
                row["majority_gap_lo"], row["majority_gap_hi"] = majority["gap_lo"], majority["gap_hi"]
        rows.append(row)
    return _table(rows)


def _table(rows: list[Row]) -> pa.Table:
    """Rows with possibly different keys -> one table; columns in first-seen order, missing values null."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    return pa.Table.from_pylist([{k: r.get(k) for k in names} for r in rows])


def markdown(table: pa.Table, columns: Sequence[str] | None = None) -> str:
    """A markdown table; by default every scalar column except the detail ones (`DETAIL_COLUMNS`)."""
    if columns is None:
        columns = [
            f.name
            for f in table.schema
            if f.name not in DETAIL_COLUMNS
            and not _MAJ_AT.fullmatch(f.name)
            and not pa.types.is_list(f.type)
            and f.name != "experiment"
        ]
    cols = [c for c in columns if c in table.column_names]
    return md_table(table.select(cols).to_pylist(), cols)


# --------------------------------------------------------------------------- figures


def score_panels(
    spec_methods: list[str], generations: list[pa.Table], verifications: list[pa.Table]
) -> dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]:
    """Per (round, method): each sample's score (NaN when unparseable) and its correctness."""
    panels = {}
    for r, (g, v) in enumerate(zip(generations, verifications, strict=True)):
        correct = np.asarray(g.column("correct").to_pylist(), dtype=bool)
        for m, s in method_scores(g, v, spec_methods, "drop").items():
            panels[(r, m)] = (s, correct)
    return panels


def report_figures(
    name: str,
    table: pa.Table,
    methods: list[str],
    generations: list[pa.Table],
    verifications: list[pa.Table],
) -> dict[str, bytes]:
    """The report's PNG figures by name (see `FIGURES`)."""
    rows = table.to_pylist()
    ks = sorted(int(m.group(1)) for c in table.column_names if (m := _PASS_AT.fullmatch(c)))
    curves = {r["round"]: {k: r[f"pass_at_{k}"] for k in ks if r[f"pass_at_{k}"] is not None} for r in rows}
    curves = {r: c for r, c in curves.items() if c}
    maj = {r["round"]: {k: r[f"maj_at_{k}"] for k in ks if r.get(f"maj_at_{k}") is not None} for r in rows}
    maj = {r: c for r, c in maj.items() if c}
    return {
        "accuracy_gap": plots.accuracy_gap_figure(rows, f"{name}: accuracy and gap per round"),
        "heldout": plots.heldout_figure(rows, f"{name}: held-out accuracy"),
        "pass_at_k": plots.pass_at_k_figure(curves, f"{name}: pass@k and maj@k per round (train prompts)", maj),
        "score_histograms": plots.score_histogram_figure(
            score_panels(methods, generations, verifications), f"{name}: verifier scores by correctness"
        ),
    }


def report_asset(exp: Experiment) -> dg.AssetsDefinition:
    rounds = exp.spec.rounds
    ins = {f"gap_{r}": dg.AssetIn(exp.key("gap", r)) for r in range(rounds)}
    ins |= {f"generations_{r}": dg.AssetIn(exp.key("generations", r)) for r in range(rounds)}
    ins |= {f"verifications_{r}": dg.AssetIn(exp.key("verifications", r)) for r in range(rounds)}
    ins |= {f"eval_{r}": dg.AssetIn(exp.key("eval", r)) for r in range(rounds + 1)}

    @dg.asset(
        key=exp.key("report"),
        ins=ins,
        group_name=exp.group(),
        kinds={"parquet"},
        code_version=CODE_VERSION,
        description=(
            "Per-round table: sampling and filtered accuracy, gap with CI, kept fraction, held-out accuracy, pass@k "
            "and maj@k for every k, the majority vote's gap, distinct answers; figures (PNG, shown below and in "
            "the warehouse's _artifacts/plots) and verdicts."
        ),
    )
    def report(warehouse: WarehouseResource, **tables: pa.Table) -> dg.Output[pa.Table]:
        generations = [tables[f"generations_{r}"] for r in range(rounds)]
        verifications = [tables[f"verifications_{r}"] for r in range(rounds)]
        table = report_rows(
            rounds,
            [tables[f"gap_{r}"] for r in range(rounds)],
            [tables[f"eval_{r}"] for r in range(rounds + 1)],
            generations,
            n_boot=exp.spec.gap.bootstrap,
            seed=exp.spec.seed,
            classes=[answer_classes(exp.task, g) for g in generations],
        )
        figures = report_figures(exp.name, table, exp.spec.verification.methods, generations, verifications)
        wh = warehouse.get()
        paths = {f: plots.artifact_path("experiment", exp.name, f) for f in figures}
        urls = {f: wh.write_bytes(paths[f], png) for f, png in figures.items()}
        table = table.append_column("plots", pa.array([list(paths.values())] * table.num_rows, pa.list_(pa.string())))
        found = verdicts(table.to_pylist())
        out = output(table, columns=["round", "eval_greedy", "eval_sampled", "j_f", "j_fw", "gap", "gap_lo", "gap_hi"])
        scalar = [f.name for f in table.schema if f.name not in DETAIL_COLUMNS and not pa.types.is_list(f.type)]
        out.metadata["per_round"] = dg.MetadataValue.md(md_transposed(table.to_pylist(), scalar, "round"))
        by_round = {"held-out": table.column("eval_greedy").to_pylist(), "gap": table.column("gap").to_pylist()}
        out.metadata["heldout_and_gap_by_round"] = dg.MetadataValue.md(plots.md_chart(by_round))
        used = [configured_row(tables[f"gap_{r}"]).get("rule", "") for r in range(rounds)]
        out.metadata["filters_used"] = "; ".join(f"round {r}: {u}" for r, u in enumerate(used))
        out.metadata.update(verdict_metadata(found))
        for f, png in figures.items():
            out.metadata[f"plot_{f}"] = dg.MetadataValue.md(plots.md_image(png, f))
            out.metadata[f"plot_path_{f}"] = dg.MetadataValue.path(urls[f])
        return out

    return report
