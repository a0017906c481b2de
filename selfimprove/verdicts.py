"""The paper's claims checked on measured tables, each decided on confidence intervals (pure functions).

(1) the gap shrinks within 2-3 rounds and (2) pass@N falls, from an experiment's report rows (§5);
(3) the relative gap rises with log pre-training FLOPs, from a study's rows (§4).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from selfimprove import metrics
from selfimprove.render import ci, md_table, num


def mean_ci(values: Sequence[float], ids: Sequence[Hashable], n_boot: int, seed: int) -> tuple[float, float]:
    """Prompt-bootstrap CI of the mean of per-prompt `values` (prompt `ids[i]` has `values[i]`)."""
    v = np.asarray(values, dtype=float)
    return metrics.bootstrap_ci(ids, lambda idx: v[idx].mean(axis=1), n_boot=n_boot, seed=seed)


def paired_change(
    now: Mapping[Hashable, float], base: Mapping[Hashable, float], n_boot: int, seed: int
) -> tuple[float, float, float]:
    """Mean per-prompt change now - base over the prompts in both, with its paired prompt-bootstrap CI."""
    ids = [p for p in now if p in base]
    if not ids:
        return math.nan, math.nan, math.nan
    d = [now[p] - base[p] for p in ids]
    lo, hi = mean_ci(d, ids, n_boot, seed)
    return float(np.mean(d)), lo, hi


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
    if not num(first["gap_lo"]) > 0:
        return Verdict(key, claim, None, f"round-0 gap {ci(first, 'gap')} is not above 0: nothing to shrink")

    def met(r: Mapping[str, Any]) -> str | None:
        if num(r["gap_lo"]) <= 0:
            return "its CI reaches 0"
        if num(r["gap_hi"]) < num(first["gap"]):
            return f"its CI lies below the round-0 gap {num(first['gap']):.3f}"
        return None

    last = [r for r in rows if r["round"] <= max_rounds][-1]
    when = next((r["round"] for r in rows[1:] if met(r) and r["round"] <= last["round"]), None)
    reason = met(last)
    evidence = f"round 0 gap {ci(first, 'gap')}; round {last['round']} gap {ci(last, 'gap')}"
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
        f"pass@N {num(first['pass_at_n']):.3f} -> {num(last['pass_at_n']):.3f} "
        f"(change {ci(last, 'pass_at_n_change')}); "
        f"pass@N - pass@1 {num(first['spread']):.3f} -> {num(last['spread']):.3f} "
        f"(change {ci(last, 'spread_change')}), round 0 -> {last['round']}"
    )
    if num(last.get("pass_at_n_change_hi")) < 0:
        return Verdict(key, claim, True, f"{evidence}: pass@N fell (CI below 0)")
    if num(last.get("spread_change_hi")) < 0:
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
        and not math.isnan(num(r.get("log10_flops")))
        and not math.isnan(num(r.get("relative_gap")))
    ]
    if len(pts) < min_sizes:
        return Verdict(key, claim, None, f"needs >= {min_sizes} models with FLOPs and a relative gap, have {len(pts)}")
    pts = sorted(pts, key=lambda r: num(r["log10_flops"]))
    x = [num(r["log10_flops"]) for r in pts]
    y = [num(r["relative_gap"]) for r in pts]
    rho = metrics.spearman(x, y)
    slope, _, r2 = metrics.linear_fit(x, y)
    small, large = pts[0], pts[-1]
    separated = num(large["relative_gap_lo"]) > num(small["relative_gap_hi"])
    evidence = (
        f"Spearman rho {rho:.3f} over {len(pts)} models; slope {slope:.4f} per decade of FLOPs (R² {r2:.3f}); "
        f"smallest {small['size']} {ci(small, 'relative_gap')}, largest {large['size']} {ci(large, 'relative_gap')}"
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
    rows = [{"claim": v.claim, "verdict": f"**{v.label}**", "evidence (95% CIs)": v.evidence} for v in found]
    return md_table(rows, ["claim", "verdict", "evidence (95% CIs)"])
