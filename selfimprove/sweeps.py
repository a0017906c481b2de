"""Threshold sweeps (paper §6.1): the gap against the filter's threshold, its best setting and its shape.

Pure, numpy only. A sweep evaluates one verifier's filter at a grid of settings along an *axis*:
- `tau`: one global threshold, keep score >= tau (tau rises from loose to strict);
- `alpha`: the per-prompt quantile filter keeping each prompt's top alpha; its strictness is 1 - alpha,
  so rows carry `strictness` (tau itself, or 1 - alpha) and curves are read along it.
Each point gets the gap and relative gap with prompt-bootstrap CIs (`metrics.gap_with_ci`).

Verdicts on the curve's shape use only the CIs:
- *interior peak* (the paper's "concave", MC and tournament): the highest point is strictly inside the
  grid and its CI lies above the gap at both ends of the grid (gap_lo(peak) > gap(loosest), gap(strictest));
- *rising* (the paper's CoT-Score): the strictest point with any sample kept is the highest (or ties it)
  and its CI lies above the loosest point's gap.
Both can fail (a flat or noisy curve): then neither shape is shown.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from selfimprove import metrics

__all__ = [
    "ALPHAS",
    "TAUS",
    "Shape",
    "best_rows",
    "pairwise_transfer",
    "rank",
    "shape",
    "sweep_rows",
    "transfer",
]

TAUS = tuple(round(0.1 * i, 1) for i in range(11))  # 0.0 .. 1.0
ALPHAS = tuple(round(0.1 * i, 1) for i in range(1, 11))  # 0.1 .. 1.0
Row = dict[str, Any]
WeightFn = Callable[[str, float], ArrayLike]  # (axis, setting) -> per-sample weights


def _strictness(axis: str, setting: float) -> float:
    if axis == "tau":
        return float(setting)
    if axis == "alpha":
        return round(1.0 - float(setting), 9)
    raise ValueError(f"axis must be 'tau' or 'alpha', got {axis!r}")


def sweep_rows(
    prompt_ids: ArrayLike,
    correct: ArrayLike,
    weights: WeightFn,
    grid: Mapping[str, Sequence[float]] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[Row]:
    """One row per (axis, setting): gap and relative gap with CIs, kept fraction, prompts left empty.

    `weights(axis, setting)` gives the filter's per-sample weights at that setting; default grid:
    tau in `TAUS`, alpha in `ALPHAS`. Empty prompts count their unfiltered accuracy (as in the gap).
    """
    grid = grid if grid is not None else {"tau": TAUS, "alpha": ALPHAS}
    codes, uniq = metrics.factorize(np.asarray(prompt_ids, dtype=object))
    rows = []
    for axis, settings in grid.items():
        for t in settings:
            w = np.asarray(weights(axis, t), dtype=np.float64)
            res = metrics.gap_with_ci(prompt_ids, correct, w, n_boot=n_boot, seed=seed)
            kept_per_prompt = np.bincount(codes, weights=(w > 0), minlength=uniq.size)
            rows.append(
                {
                    "axis": axis,
                    "setting": float(t),
                    "strictness": _strictness(axis, t),
                    **res.columns(),
                    "empty_prompts": int((kept_per_prompt == 0).sum()),
                }
            )
    return rows


def _by_curve(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[tuple[Hashable, ...], list[Any]]:
    curves: dict[tuple[Hashable, ...], list[Any]] = {}
    for r in rows:
        curves.setdefault(tuple(r[k] for k in keys), []).append(r)
    return curves


def rank(r: Mapping[str, Any]) -> tuple[float, float]:
    """The order of settings on one curve: the higher gap; on equal gaps the one keeping more."""
    return (r["gap"], r["kept_fraction"])


def best_rows(rows: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("verifier", "axis")) -> set[int]:
    """Indices (into `rows`) of each curve's best setting: the highest gap; on equal gaps the one keeping more."""
    best: dict[tuple[Hashable, ...], int] = {}
    for i, r in enumerate(rows):
        k = tuple(r[x] for x in keys)
        j = best.get(k)
        if j is None or rank(r) > rank(rows[j]):
            best[k] = i
    return set(best.values())


@dataclass(frozen=True)
class Shape:
    """The shape of one gap-vs-strictness curve, decided on CIs (see the module docstring)."""

    interior_peak: bool
    rising: bool
    peak_strictness: float
    evidence: str

    @property
    def label(self) -> str:
        return "interior peak" if self.interior_peak else "rising" if self.rising else "neither"


def shape(curve: Sequence[Mapping[str, Any]]) -> Shape:
    """The shape of one curve (rows of one verifier and axis with `strictness`, `gap`, `gap_lo`, `kept_fraction`)."""
    pts = sorted(curve, key=lambda r: r["strictness"])
    if len(pts) < 3:
        raise ValueError(f"a shape needs >= 3 settings, got {len(pts)}")
    live = [r for r in pts if r["kept_fraction"] > 0]  # a setting keeping nothing is the unfiltered model again
    pts = live if len(live) >= 3 else pts
    gaps = np.array([r["gap"] for r in pts])
    i = int(np.argmax(gaps))
    peak, loose, strict = pts[i], pts[0], pts[-1]
    interior = 0 < i < len(pts) - 1 and peak["gap_lo"] > max(loose["gap"], strict["gap"])
    rising = bool(strict["gap"] >= gaps.max() - 1e-12 and strict["gap_lo"] > loose["gap"])
    evidence = (
        f"peak {peak['gap']:+.3f} [{peak['gap_lo']:+.3f}, {peak['gap_hi']:+.3f}] "
        f"at strictness {peak['strictness']:.2f}; "
        f"loosest ({loose['strictness']:.2f}) {loose['gap']:+.3f}, strictest kept ({strict['strictness']:.2f}) "
        f"{strict['gap']:+.3f} [{strict['gap_lo']:+.3f}, {strict['gap_hi']:+.3f}]"
    )
    return Shape(bool(interior), rising, float(peak["strictness"]), evidence)


def _reaches(at: Mapping[str, Any], own_best: Mapping[str, Any]) -> bool:
    """A setting serves a member when its gap's CI there reaches the member's own best gap."""
    return bool(at["gap_hi"] >= own_best["gap"] - 1e-12)


def _shared(rows: Sequence[Mapping[str, Any]], member_key: str) -> tuple[list[Any], list[float], dict, dict]:
    """(members in order, settings every member has, (member, setting) -> row, member -> its best row over those
    settings by `rank`; empty when no setting is shared)."""
    members = list(dict.fromkeys(r[member_key] for r in rows))
    at = {(r[member_key], r["setting"]): r for r in rows}
    common = sorted(s for s in {r["setting"] for r in rows} if all((m, s) in at for m in members))
    best = {m: max((at[(m, s)] for s in common), key=rank) for m in members} if common else {}
    return members, common, at, best


def transfer(rows: Sequence[Mapping[str, Any]], member_key: str = "member") -> dict[str, Any]:
    """Does one curve's best setting serve the other members (sizes of a family, or tasks)?

    `rows`: sweep rows of one verifier and axis, for several members (`member_key`). The family's setting
    is the one with the highest mean gap over members; it transfers to a member when the member's gap at
    it has a CI reaching that member's own best gap (gap_hi >= own best gap). Returns the family setting,
    each member's best setting and whether it transfers, and `holds` (True if it transfers to all).
    """
    members, common, at, best = _shared(rows, member_key)
    if len(members) < 2:
        return {"holds": None, "evidence": f"needs >= 2 members, have {len(members)}"}
    if not common:
        return {"holds": None, "evidence": "no setting is shared by every member"}
    family = max(common, key=lambda s: (float(np.mean([at[(m, s)]["gap"] for m in members])), -s))
    per: dict[str, dict[str, float | bool]] = {}
    for m in members:
        own, fam = best[m], at[(m, family)]
        per[m] = {
            "best": own["setting"],
            "best_gap": own["gap"],
            "gap_at_family": fam["gap"],
            "gap_at_family_hi": fam["gap_hi"],
            "transfers": _reaches(fam, own),
        }
    holds = all(bool(p["transfers"]) for p in per.values())
    evidence = "; ".join(
        f"{m}: best {p['best']:g} ({p['best_gap']:+.3f}), at {family:g} {p['gap_at_family']:+.3f} "
        f"(CI to {p['gap_at_family_hi']:+.3f})"
        for m, p in per.items()
    )
    return {"holds": holds, "family_setting": family, "members": per, "evidence": evidence}


def pairwise_transfer(rows: Sequence[Mapping[str, Any]], member_key: str = "member") -> list[Row]:
    """Each member's best setting applied to every other member (does one task's best threshold serve another?).

    `rows`: sweep rows of one verifier and axis for several members. One row per ordered pair (`source`,
    `target`) over the settings every member has: the source's best setting, the target's own best setting
    and gap, the target's gap at the source's best with its CI, and `transfers` (the same rule as `transfer`:
    that CI reaches the target's own best gap). Empty with fewer than 2 members or no shared setting.
    """
    members, common, at, best = _shared(rows, member_key)
    if len(members) < 2 or not common:
        return []
    out = []
    for src in members:
        for dst in members:
            if src == dst:
                continue
            there = at[(dst, best[src]["setting"])]
            out.append(
                {
                    "source": src,
                    "target": dst,
                    "source_best": best[src]["setting"],
                    "target_best": best[dst]["setting"],
                    "target_best_gap": best[dst]["gap"],
                    "gap_at_source_best": there["gap"],
                    "gap_at_source_best_lo": there["gap_lo"],
                    "gap_at_source_best_hi": there["gap_hi"],
                    "transfers": _reaches(there, best[dst]),
                }
            )
    return out
