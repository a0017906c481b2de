"""The report asset: one row per round (accuracy, gap, held-out accuracy, pass@k, diversity), its
figures, and the verdicts on the paper's iterative claims (§5), each decided on CIs.

`report_rows` and `verdicts` are plain functions; the asset renders the figures (`plots.py`), writes
them to `<warehouse>/_artifacts/plots/experiment=E/`, lists their paths in the table's `plots` column
and shows them inline in the asset's metadata.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa

from selfimprove import metrics
from selfimprove.assets import plots
from selfimprove.assets.common import Experiment, output
from selfimprove.assets.evals import accuracy
from selfimprove.assets.gaps import headline
from selfimprove.assets.scoring import method_scores
from selfimprove.resources.io_manager import WarehouseResource

CODE_VERSION = "2"  # 2: pass@k for every k, CIs of pass@N and of its change, diversity, plots
_PASS_AT = re.compile(r"pass_at_(\d+)")
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


def _mean_ci(values: np.ndarray, ids: list[Hashable], n_boot: int, seed: int) -> tuple[float, float]:
    return metrics.bootstrap_ci(ids, lambda idx: float(values[idx].mean()), n_boot=n_boot, seed=seed)


def _change(
    now: Mapping[Hashable, float], base: Mapping[Hashable, float], n_boot: int, seed: int
) -> tuple[float, float, float]:
    """Mean per-prompt change now - base over the prompts in both, with a paired prompt-bootstrap CI."""
    ids = [p for p in now if p in base]
    if not ids:
        return math.nan, math.nan, math.nan
    d = np.array([now[p] - base[p] for p in ids])
    lo, hi = _mean_ci(d, ids, n_boot, seed)
    return float(d.mean()), lo, hi


@dataclass(frozen=True)
class RoundSamples:
    """What the report needs from one round's generations."""

    curve: dict[int, float]  # pass@k for k = 1, 2, 4, ..., N
    pass_n: dict[Hashable, float]  # per-prompt pass@N
    spread: dict[Hashable, float]  # per-prompt pass@N - pass@1
    distinct: float  # mean distinct non-null answers per prompt

    @classmethod
    def of(cls, generations: pa.Table) -> RoundSamples:
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
        )


def report_rows(
    rounds: int,
    gaps: list[pa.Table],
    evals: list[pa.Table],
    generations: list[pa.Table],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> pa.Table:
    """R rounds of gaps and generations, and R + 1 evals (the last one after the final round).

    Each generating round adds the configured verifier's gap statistics, pass@k for k = 1, 2, 4, ..., N
    (`pass_at_<k>`, and `pass_at_n` = pass@N), a prompt-bootstrap CI of pass@N, its change since round 0
    (`pass_at_n_change`, paired over prompts), the same for `spread` = pass@N - pass@1, and
    `distinct_answers` (mean distinct final answers per prompt).
    """
    samples = [RoundSamples.of(g) for g in generations[:rounds]]
    rows: list[Row] = []
    for r in range(rounds + 1):
        row: Row = {
            "round": r,
            "eval_greedy": accuracy(evals[r], "greedy"),
            "eval_sampled": accuracy(evals[r], "sampled"),
        }
        if r < rounds:
            row.update(headline(gaps[r]))
            configured = next(x for x in gaps[r].to_pylist() if x["configured"])
            row["relative_gap_lo"] = configured["relative_gap_lo"]
            row["relative_gap_hi"] = configured["relative_gap_hi"]
            s, s0 = samples[r], samples[0]
            for k, v in s.curve.items():
                row[f"pass_at_{k}"] = v
            row["pass_at_n"] = s.curve[max(s.curve)]
            ids = list(s.pass_n)
            row["pass_at_n_lo"], row["pass_at_n_hi"] = _mean_ci(np.array(list(s.pass_n.values())), ids, n_boot, seed)
            row["spread"] = float(np.mean(list(s.spread.values())))
            if r > 0:
                change = _change(s.pass_n, s0.pass_n, n_boot, seed)
                row["pass_at_n_change"], row["pass_at_n_change_lo"], row["pass_at_n_change_hi"] = change
                change = _change(s.spread, s0.spread, n_boot, seed)
                row["spread_change"], row["spread_change_lo"], row["spread_change_hi"] = change
            row["distinct_answers"] = s.distinct
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
            if f.name not in DETAIL_COLUMNS and not pa.types.is_list(f.type) and f.name != "experiment"
        ]
    cols = [c for c in columns if c in table.column_names]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---:|" * len(cols)]
    for r in table.select(cols).to_pylist():
        cells = ["" if r[c] is None else f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdict:
    """One of the paper's claims checked on this run: holds True/False, None when the data cannot decide."""

    key: str  # short name: gap_shrinks, pass_at_n_falls, relative_gap_scales
    claim: str
    holds: bool | None
    evidence: str

    @property
    def label(self) -> str:
        return {True: "holds", False: "does not hold", None: "undecided"}[self.holds]


def _f(v: Any) -> float:
    return math.nan if v is None else float(v)


def _ci(row: Mapping[str, Any], key: str) -> str:
    return f"{_f(row.get(key)):.3f} [{_f(row.get(key + '_lo')):.3f}, {_f(row.get(key + '_hi')):.3f}]"


def gap_verdict(report: Sequence[Mapping[str, Any]], max_rounds: int = 3) -> Verdict:
    """(1) The gap shrinks towards 0 within 2-3 rounds (paper §5, Fig. 4).

    Round 0's gap must be positive (CI above 0), else there is nothing to shrink (undecided). At round
    t = min(last round with a gap, `max_rounds`) it holds if the gap's CI reaches 0 (gap_lo <= 0) or lies
    wholly below round 0's gap (gap_hi < gap at round 0).
    """
    key, claim = "gap_shrinks", "gap shrinks towards 0 within 2-3 rounds"
    rows = sorted((r for r in report if r.get("gap") is not None), key=lambda r: r["round"])
    if len(rows) < 2:
        return Verdict(key, claim, None, f"needs >= 2 rounds with a gap, have {len(rows)}")
    first = rows[0]
    if not _f(first["gap_lo"]) > 0:
        return Verdict(key, claim, None, f"round-0 gap {_ci(first, 'gap')} is not above 0: nothing to shrink")

    def met(r: Mapping[str, Any]) -> str | None:
        if _f(r["gap_lo"]) <= 0:
            return "its CI reaches 0"
        if _f(r["gap_hi"]) < _f(first["gap"]):
            return f"its CI lies below the round-0 gap {_f(first['gap']):.3f}"
        return None

    last = [r for r in rows if r["round"] <= max_rounds][-1]
    when = next((r["round"] for r in rows[1:] if met(r) and r["round"] <= last["round"]), None)
    reason = met(last)
    evidence = f"round 0 gap {_ci(first, 'gap')}; round {last['round']} gap {_ci(last, 'gap')}"
    if reason:
        return Verdict(key, claim, True, f"{evidence}: {reason} (first met at round {when})")
    return Verdict(key, claim, False, f"{evidence}: CI neither reaches 0 nor lies below the round-0 gap")


def diversity_verdict(report: Sequence[Mapping[str, Any]]) -> Verdict:
    """(2) Effective diversity falls: pass@N falls over the rounds, or falls relative to pass@1 (§5).

    At the last generating round it holds if the paired CI of pass@N's change since round 0 lies below 0,
    or that of the spread pass@N - pass@1 does.
    """
    key, claim = "pass_at_n_falls", "pass@N falls over the rounds (or relative to pass@1)"
    rows = sorted((r for r in report if r.get("pass_at_n") is not None), key=lambda r: r["round"])
    if len(rows) < 2:
        return Verdict(key, claim, None, f"needs >= 2 rounds with samples, have {len(rows)}")
    first, last = rows[0], rows[-1]
    evidence = (
        f"pass@N {_f(first['pass_at_n']):.3f} -> {_f(last['pass_at_n']):.3f} (change {_ci(last, 'pass_at_n_change')}); "
        f"pass@N - pass@1 {_f(first['spread']):.3f} -> {_f(last['spread']):.3f} "
        f"(change {_ci(last, 'spread_change')}), round 0 -> {last['round']}"
    )
    if _f(last.get("pass_at_n_change_hi")) < 0:
        return Verdict(key, claim, True, f"{evidence}: pass@N fell (CI below 0)")
    if _f(last.get("spread_change_hi")) < 0:
        return Verdict(key, claim, True, f"{evidence}: pass@N fell relative to pass@1 (CI below 0)")
    return Verdict(key, claim, False, f"{evidence}: neither change has a CI below 0")


def scaling_verdict(
    scaling: Sequence[Mapping[str, Any]], verifier: str = "cot_score", filter: str = "quantile", min_sizes: int = 4
) -> Verdict:
    """(3) The relative gap rises monotonically with log pre-training FLOPs for a verifier (§4, Fig. 1).

    Over the study rows of (`verifier`, `filter`) with FLOPs and a relative gap, it needs >= `min_sizes`
    models; it holds if Spearman's rho between log10 FLOPs and the relative gap is 1 (strictly monotone)
    and the largest model's relative-gap CI lies wholly above the smallest model's.
    """
    key, claim = "relative_gap_scales", f"relative gap rises monotonically with log FLOPs ({verifier}, {filter})"
    pts = [
        r
        for r in scaling
        if r["verifier"] == verifier
        and r["filter"] == filter
        and not math.isnan(_f(r.get("log10_flops")))
        and not math.isnan(_f(r.get("relative_gap")))
    ]
    if len(pts) < min_sizes:
        return Verdict(key, claim, None, f"needs >= {min_sizes} models with FLOPs and a relative gap, have {len(pts)}")
    pts = sorted(pts, key=lambda r: _f(r["log10_flops"]))
    x = [_f(r["log10_flops"]) for r in pts]
    y = [_f(r["relative_gap"]) for r in pts]
    rho = metrics.spearman(x, y)
    slope, _, r2 = metrics.linear_fit(x, y)
    small, large = pts[0], pts[-1]
    separated = _f(large["relative_gap_lo"]) > _f(small["relative_gap_hi"])
    evidence = (
        f"Spearman rho {rho:.3f} over {len(pts)} models; slope {slope:.4f} per decade of FLOPs (R² {r2:.3f}); "
        f"smallest {small['size']} {_ci(small, 'relative_gap')}, largest {large['size']} {_ci(large, 'relative_gap')}"
    )
    monotone = math.isclose(rho, 1.0, abs_tol=1e-12)
    if monotone and separated:
        return Verdict(key, claim, True, f"{evidence}: strictly monotone and the end CIs are disjoint")
    why = "the end CIs overlap" if monotone else "not monotone (rho < 1)"
    if math.isnan(rho):
        why = "no ranking (rho undefined: a constant relative gap)"
    return Verdict(key, claim, False, f"{evidence}: {why}")


def verdicts(
    report: Sequence[Mapping[str, Any]] | None = None,
    scaling: Sequence[Mapping[str, Any]] | None = None,
    *,
    verifier: str = "cot_score",
    filter: str = "quantile",
    min_sizes: int = 4,
    max_rounds: int = 3,
) -> list[Verdict]:
    """The claims the given data can speak to: (1) and (2) from a report's rows, (3) from a study's rows."""
    out = []
    if report is not None:
        out += [gap_verdict(report, max_rounds), diversity_verdict(report)]
    if scaling is not None:
        out.append(scaling_verdict(scaling, verifier, filter, min_sizes))
    return out


def verdict_markdown(found: Sequence[Verdict]) -> str:
    lines = ["| claim | verdict | evidence (95% CIs) |", "|---|---|---|"]
    lines += [f"| {v.claim} | **{v.label}** | {v.evidence} |" for v in found]
    return "\n".join(lines)


def verdict_metadata(found: Sequence[Verdict]) -> dict[str, Any]:
    meta: dict[str, Any] = {"verdicts": dg.MetadataValue.md(verdict_markdown(found))}
    for v in found:
        meta[f"verdict_{v.key}"] = v.label
    return meta


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
    return {
        "accuracy_gap": plots.accuracy_gap_figure(rows, f"{name}: accuracy and gap per round"),
        "heldout": plots.heldout_figure(rows, f"{name}: held-out accuracy"),
        "pass_at_k": plots.pass_at_k_figure(curves, f"{name}: pass@k per round (train prompts)"),
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
            "Per-round table: sampling and filtered accuracy, gap with CI, held-out accuracy, pass@k for every k, "
            "distinct answers; figures (PNG, shown below and in the warehouse's _artifacts/plots) and verdicts."
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
        )
        figures = report_figures(exp.name, table, exp.spec.verification.methods, generations, verifications)
        wh = warehouse.get()
        paths = {f: plots.artifact_path("experiment", exp.name, f) for f in figures}
        urls = {f: wh.write_bytes(paths[f], png) for f, png in figures.items()}
        table = table.append_column("plots", pa.array([list(paths.values())] * table.num_rows, pa.list_(pa.string())))
        found = verdicts(table.to_pylist())
        out = output(table)
        out.metadata["per_round"] = dg.MetadataValue.md(markdown(table))
        out.metadata.update(verdict_metadata(found))
        for f, png in figures.items():
            out.metadata[f"plot_{f}"] = dg.MetadataValue.md(plots.md_image(png, f))
            out.metadata[f"plot_path_{f}"] = dg.MetadataValue.path(urls[f])
        return out

    return report
