"""Pure metrics of the generation-verification gap (Song et al., ICLR 2025, §2-§5).

Inputs are flat per-sample arrays aligned by position: `prompt_ids` (any hashable), `correct`
(bool or 0/1 utility), `scores` (float), `weights` (float >= 0; a kept mask is `weights > 0`).
Prompts are ordered by first appearance in `prompt_ids` (see `factorize`). numpy only, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BOOTSTRAP_BLOCK = 1 << 20  # prompt positions drawn per block of resamples (8 MiB of indices)

__all__ = [
    "GapResult",
    "accuracy_at_threshold",
    "auroc",
    "bootstrap_ci",
    "distinct_answers",
    "ece",
    "factorize",
    "filtered_accuracy",
    "gap",
    "gap_with_ci",
    "group_average_ranks",
    "linear_fit",
    "pass_at_k",
    "pass_at_k_curve",
    "per_prompt_accuracy",
    "relative_gap",
    "sampling_accuracy",
    "score_correlation",
    "spearman",
    "within_prompt_auroc",
]


# --------------------------------------------------------------------------- helpers


def factorize(prompt_ids: ArrayLike) -> tuple[IntArray, NDArray[Any]]:
    """Integer codes (0..G-1) per sample and the G unique ids, both in first-appearance order."""
    # Non-arrays become object arrays, so mixed ids (1 and "1") are not coerced to one string type.
    arr = prompt_ids if isinstance(prompt_ids, np.ndarray) else np.fromiter(prompt_ids, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"prompt_ids must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.intp), arr
    try:
        uniq, first, inv = np.unique(arr, return_index=True, return_inverse=True)
    except TypeError:  # unorderable mix of hashables
        index: dict[Hashable, int] = {}
        codes = np.fromiter((index.setdefault(p, len(index)) for p in arr), dtype=np.intp, count=arr.size)
        uniques = np.empty(len(index), dtype=object)
        uniques[:] = list(index)
        return codes, uniques
    order = np.argsort(first, kind="stable")
    rank = np.empty(order.size, dtype=np.intp)
    rank[order] = np.arange(order.size)
    return rank[inv.ravel()], uniq[order]


def _float1d(x: ArrayLike, name: str, n: int | None = None) -> FloatArray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if n is not None and arr.size != n:
        raise ValueError(f"{name} has length {arr.size}, expected {n}")
    return arr


def _correct(correct: ArrayLike, n: int) -> FloatArray:
    c = _float1d(correct, "correct", n)
    if np.isnan(c).any():
        raise ValueError("correct contains NaN")
    return c


def _weights(weights: ArrayLike, n: int) -> FloatArray:
    w = _float1d(weights, "weights", n)
    if np.isnan(w).any() or (w < 0).any():
        raise ValueError("weights must be non-negative and not NaN")
    return w


def group_average_ranks(codes: IntArray, values: FloatArray) -> FloatArray:
    """1-based ranks of `values` within each group (average ranks for ties); NaN values get NaN."""
    n = values.size
    ranks = np.full(n, np.nan)
    if n == 0:
        return ranks
    valid = ~np.isnan(values)
    order = np.lexsort((values, ~valid, codes))  # by group, valid first, then value
    sc, sv, svalid = codes[order], values[order], valid[order]
    new_group = np.r_[True, sc[1:] != sc[:-1]]
    start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    pos = (np.arange(n) - start).astype(np.float64)
    block = np.cumsum(new_group | np.r_[True, sv[1:] != sv[:-1]]) - 1
    avg = np.bincount(block, weights=pos) / np.bincount(block)
    sorted_ranks = avg[block] + 1.0
    sorted_ranks[~svalid] = np.nan
    ranks[order] = sorted_ranks
    return ranks


def _group_means(codes: IntArray, n_groups: int, c: FloatArray, w: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per-group weighted mean of `c` (NaN where the weights sum to 0) and per-group weight sum."""
    wsum = np.bincount(codes, weights=w, minlength=n_groups)
    num = np.bincount(codes, weights=w * c, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / wsum, wsum


def _prompt_accuracies(prompt_ids: ArrayLike, correct: ArrayLike, weights: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Per-prompt J_x(f) and J_x(f[w]); an empty-filter prompt gets J_x(f[w]) = J_x(f)."""
    codes, uniq = factorize(prompt_ids)
    c = _correct(correct, codes.size)
    w = _weights(weights, codes.size)
    jx, _ = _group_means(codes, uniq.size, c, np.ones_like(c))
    jwx, wsum = _group_means(codes, uniq.size, c, w)
    jwx = np.where(wsum > 0, jwx, jx)
    return jx, jwx


def _nanmean(x: FloatArray) -> float:
    return float(x.mean()) if x.size else math.nan


# --------------------------------------------------------------------------- accuracy and gap


def per_prompt_accuracy(prompt_ids: ArrayLike, correct: ArrayLike) -> dict[Hashable, float]:
    """J_x(f): mean correctness of each prompt's samples, keyed by prompt id."""
    codes, uniq = factorize(prompt_ids)
    c = _correct(correct, codes.size)
    jx, _ = _group_means(codes, uniq.size, c, np.ones_like(c))
    return {p: float(v) for p, v in zip(uniq.tolist(), jx, strict=True)}


def sampling_accuracy(prompt_ids: ArrayLike, correct: ArrayLike) -> float:
    """J(f): mean over prompts of the per-prompt mean correctness."""
    jx, _ = _prompt_accuracies(prompt_ids, correct, np.ones(np.asarray(correct).shape))
    return _nanmean(jx)


def filtered_accuracy(prompt_ids: ArrayLike, correct: ArrayLike, weights: ArrayLike) -> float:
    """J(f[w]): mean over prompts of the weighted mean correctness; empty-filter prompts use J_x(f)."""
    _, jwx = _prompt_accuracies(prompt_ids, correct, weights)
    return _nanmean(jwx)


def gap(prompt_ids: ArrayLike, correct: ArrayLike, weights: ArrayLike) -> float:
    """GV-gap (Def. 2.1): J(f[w]) - J(f) over the same prompts."""
    jx, jwx = _prompt_accuracies(prompt_ids, correct, weights)
    return _nanmean(jwx) - _nanmean(jx)


def _relative(jx: FloatArray, jwx: FloatArray) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Per-prompt relative gap (NaN where excluded) and the inclusion mask J_x(f) < 1."""
    incl = jx < 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(incl, (jwx - jx) / (1.0 - jx), np.nan)
    return rel, incl


def relative_gap(prompt_ids: ArrayLike, correct: ArrayLike, weights: ArrayLike) -> tuple[float, int]:
    """Relative gap (Def. 2.2): mean of (J_x(f[w]) - J_x(f)) / (1 - J_x(f)) over prompts with J_x(f) < 1.

    Returns (value, number of excluded prompts with J_x(f) = 1); value is NaN if none are left.
    """
    jx, jwx = _prompt_accuracies(prompt_ids, correct, weights)
    rel, incl = _relative(jx, jwx)
    return _nanmean(rel[incl]), int((~incl).sum())


# --------------------------------------------------------------------------- bootstrap


def bootstrap_ci(
    prompt_ids: ArrayLike,
    statistic: Callable[[IntArray], FloatArray],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile CI from resampling prompts with replacement (a drawn prompt brings all its samples).
    `statistic(idx)` maps a (B, G) matrix, one resample of G prompt positions (order of `factorize`) per row,
    to the B statistics (NaNs ignored). Blocks are drawn in order from one generator: same draws any block size."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    _, uniq = factorize(prompt_ids)
    n_prompts = uniq.size
    if n_prompts == 0 or n_boot < 1:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    rows = max(1, BOOTSTRAP_BLOCK // n_prompts)  # resamples per block
    blocks = [rng.integers(0, n_prompts, (min(rows, n_boot - b), n_prompts)) for b in range(0, n_boot, rows)]
    stats = np.concatenate([np.asarray(statistic(idx), dtype=float).reshape(len(idx)) for idx in blocks])
    if np.isnan(stats).all():
        return math.nan, math.nan
    lo, hi = np.nanquantile(stats, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


@dataclass(frozen=True)
class GapResult:
    """Point estimates and prompt-bootstrap CIs of the GV-gap for one (generator, verifier, filter)."""

    j_f: float  # J(f)
    j_fw: float  # J(f[w])
    gap: float  # J(f[w]) - J(f)
    relative_gap: float  # mean over prompts with J_x(f) < 1
    n_prompts: int
    n_excluded: int  # prompts with J_x(f) = 1, left out of the relative gap
    kept_fraction: float  # fraction of samples with weight > 0
    gap_ci: tuple[float, float]
    relative_gap_ci: tuple[float, float]

    def columns(self) -> dict[str, float | int]:
        """The columns every gap-reporting table shares (gap, sweeps), CI bounds flattened."""
        (lo, hi), (rlo, rhi), n = self.gap_ci, self.relative_gap_ci, self.n_prompts
        return {"j_f": self.j_f, "j_fw": self.j_fw, "gap": self.gap, "gap_lo": lo, "gap_hi": hi,
                "relative_gap": self.relative_gap, "relative_gap_lo": rlo, "relative_gap_hi": rhi,
                "n_prompts": n, "n_excluded": self.n_excluded, "kept_fraction": self.kept_fraction}  # fmt: skip


def gap_with_ci(
    prompt_ids: ArrayLike,
    correct: ArrayLike,
    weights: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> GapResult:
    """All gap statistics with percentile CIs for gap and relative gap (same prompt resamples for both)."""
    jx, jwx = _prompt_accuracies(prompt_ids, correct, weights)
    w = np.asarray(weights, dtype=np.float64)
    diff = jwx - jx
    rel, incl = _relative(jx, jwx)
    rel0 = np.where(incl, rel, 0.0)
    incl_f = incl.astype(np.float64)

    def rel_stat(idx: IntArray) -> FloatArray:
        n = incl_f[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, rel0[idx].sum(axis=1) / n, math.nan)

    return GapResult(
        j_f=_nanmean(jx),
        j_fw=_nanmean(jwx),
        gap=_nanmean(jwx) - _nanmean(jx),
        relative_gap=_nanmean(rel[incl]),
        n_prompts=int(jx.size),
        n_excluded=int((~incl).sum()),
        kept_fraction=_nanmean((w > 0).astype(np.float64)),
        gap_ci=bootstrap_ci(prompt_ids, lambda idx: diff[idx].mean(axis=1), n_boot, seed, level),
        relative_gap_ci=bootstrap_ci(prompt_ids, rel_stat, n_boot, seed, level),
    )


# --------------------------------------------------------------------------- verifier quality


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """AUROC via Mann-Whitney U (ties count 1/2); NaN-score samples dropped; NaN if a class is absent."""
    s = _float1d(scores, "scores")
    y = _float1d(labels, "labels", s.size) > 0.5
    value, _ = within_prompt_auroc(np.zeros(s.size, dtype=np.intp), s, y)
    return value


def within_prompt_auroc(prompt_ids: ArrayLike, scores: ArrayLike, labels: ArrayLike) -> tuple[float, int]:
    """Mean per-prompt AUROC over prompts with both outcomes; returns (value, number of such prompts)."""
    codes, uniq = factorize(prompt_ids)
    s = _float1d(scores, "scores", codes.size)
    y = _float1d(labels, "labels", codes.size) > 0.5
    valid = ~np.isnan(s)
    ranks = group_average_ranks(codes, s)
    pos = (y & valid).astype(np.float64)
    neg = (~y & valid).astype(np.float64)
    n_pos = np.bincount(codes, weights=pos, minlength=uniq.size)
    n_neg = np.bincount(codes, weights=neg, minlength=uniq.size)
    rank_pos = np.bincount(codes, weights=np.where(pos > 0, ranks, 0.0), minlength=uniq.size)
    mixed = (n_pos > 0) & (n_neg > 0)
    u = rank_pos[mixed] - n_pos[mixed] * (n_pos[mixed] + 1.0) / 2.0
    return _nanmean(u / (n_pos[mixed] * n_neg[mixed])), int(mixed.sum())


def accuracy_at_threshold(scores: ArrayLike, labels: ArrayLike, tau: float) -> float:
    """Fraction of samples where the prediction `score >= tau` (NaN predicts 0) equals the label."""
    s = _float1d(scores, "scores")
    y = _float1d(labels, "labels", s.size) > 0.5
    with np.errstate(invalid="ignore"):
        pred = s >= tau
    return _nanmean((pred == y).astype(np.float64))


def ece(probs: ArrayLike, labels: ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error: sum_b (n_b/N)|mean(label_b) - mean(prob_b)|.

    Equal-width bins [i/n_bins, (i+1)/n_bins), the last one closed at 1; NaN probabilities dropped.
    """
    p = _float1d(probs, "probs")
    y = _float1d(labels, "labels", p.size)
    keep = ~np.isnan(p)
    p, y = p[keep], y[keep]
    if p.size == 0:
        return math.nan
    if (p < 0).any() or (p > 1).any():
        raise ValueError("probs must lie in [0, 1]")
    b = np.minimum((p * n_bins).astype(np.intp), n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    gaps = np.abs(np.bincount(b, weights=y, minlength=n_bins) - np.bincount(b, weights=p, minlength=n_bins))
    return float(gaps.sum() / count.sum())


def _paired(a: ArrayLike, b: ArrayLike) -> tuple[FloatArray, FloatArray]:
    x = _float1d(a, "a")
    y = _float1d(b, "b", x.size)
    ok = ~(np.isnan(x) | np.isnan(y))
    return x[ok], y[ok]


def _pearson(x: FloatArray, y: FloatArray) -> float:
    if x.size < 2:
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    den = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return float(np.clip((dx @ dy) / den, -1.0, 1.0)) if den > 0 else math.nan


def score_correlation(a: ArrayLike, b: ArrayLike) -> float:
    """Pearson correlation over pairs where both are non-NaN; NaN if either side is constant."""
    return _pearson(*_paired(a, b))


def spearman(a: ArrayLike, b: ArrayLike) -> float:
    """Spearman correlation: Pearson of average ranks (ties averaged), pairs with a NaN dropped."""
    x, y = _paired(a, b)
    zero = np.zeros(x.size, dtype=np.intp)
    return _pearson(group_average_ranks(zero, x), group_average_ranks(zero, y))


# --------------------------------------------------------------------------- diversity


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k = 1 - C(n-c, k)/C(n, k), as the product 1 - prod_{i=n-c+1}^{n} (1 - k/i)."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def pass_at_k_curve(prompt_ids: ArrayLike, correct: ArrayLike, ks: list[int] | None = None) -> dict[int, float]:
    """Mean over prompts of pass@k; default ks = 1, 2, 4, ... up to N plus N (N = min samples per prompt)."""
    codes, uniq = factorize(prompt_ids)
    c = _correct(correct, codes.size) > 0.5
    n_g = np.bincount(codes, minlength=uniq.size)
    c_g = np.bincount(codes, weights=c, minlength=uniq.size).astype(np.intp)
    if uniq.size == 0:
        return {}
    n_min = int(n_g.min())
    if ks is None:
        ks = [2**i for i in range(n_min.bit_length()) if 2**i <= n_min]
        if ks[-1] != n_min:
            ks.append(n_min)
    out: dict[int, float] = {}
    for k in ks:
        if not 1 <= k <= n_min:
            raise ValueError(f"k={k} outside [1, {n_min}] (min samples per prompt)")
        out[int(k)] = float(np.mean([pass_at_k(int(n), int(m), int(k)) for n, m in zip(n_g, c_g, strict=True)]))
    return out


def _is_null(a: Any) -> bool:
    return a is None or (isinstance(a, float) and math.isnan(a))


def distinct_answers(prompt_ids: ArrayLike, answers: ArrayLike) -> float:
    """Mean over prompts of the number of distinct non-null (not None/NaN) final answers."""
    codes, uniq = factorize(prompt_ids)
    ans = np.asarray(answers, dtype=object)
    if ans.shape != codes.shape:
        raise ValueError(f"answers has shape {ans.shape}, expected {codes.shape}")
    sets: list[set[Any]] = [set() for _ in range(uniq.size)]
    for g, a in zip(codes.tolist(), ans.tolist(), strict=True):
        if not _is_null(a):
            sets[g].add(a)
    return _nanmean(np.array([len(s) for s in sets], dtype=np.float64))


# --------------------------------------------------------------------------- scaling fit


def linear_fit(x: ArrayLike, y: ArrayLike) -> tuple[float, float, float]:
    """Least-squares fit y = slope*x + intercept; returns (slope, intercept, R^2), R^2 NaN if y constant."""
    xs, ys = _paired(x, y)
    if xs.size < 2 or np.ptp(xs) == 0:
        raise ValueError("linear_fit needs at least two distinct x values")
    dx, dy = xs - xs.mean(), ys - ys.mean()
    slope = float(dx @ dy) / float(dx @ dx)
    intercept = float(ys.mean() - slope * xs.mean())
    ss_tot = float(dy @ dy)
    resid = ys - (slope * xs + intercept)
    r2 = 1.0 - float(resid @ resid) / ss_tot if ss_tot > 0 else math.nan
    return slope, intercept, r2
