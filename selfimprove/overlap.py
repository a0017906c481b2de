"""Verifier overlap and calibration (paper §6.2): do verifiers see the same errors, and do their scores mean it?

Pure, numpy only. For every pair of verifiers over the same samples:
- score correlations, Pearson (`metrics.score_correlation`) and Spearman, pooled over samples;
- agreement on kept samples under each verifier's own filter: the fraction of samples both keep or both
  drop, Cohen's kappa (agreement beyond what the two kept rates give by chance), and the Jaccard overlap
  |both kept| / |either kept|.
Per verifier, calibration of the score as a probability of being correct: ECE (`metrics.ece`, 10 equal-width
bins) and the reliability table (per bin: samples, mean score, accuracy). NaN scores are left out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from selfimprove import metrics

__all__ = ["calibration_rows", "cohen_kappa", "pair_rows", "reliability"]

Row = dict[str, Any]


def cohen_kappa(a: ArrayLike, b: ArrayLike) -> float:
    """Cohen's kappa of two boolean labellings: (p_o - p_e) / (1 - p_e); NaN when p_e = 1 (both constant, equal)."""
    x = np.asarray(a, dtype=bool)
    y = np.asarray(b, dtype=bool)
    if x.shape != y.shape:
        raise ValueError(f"labellings differ in shape: {x.shape} vs {y.shape}")
    if x.size == 0:
        return math.nan
    p_o = float((x == y).mean())
    pa, pb = float(x.mean()), float(y.mean())
    p_e = pa * pb + (1 - pa) * (1 - pb)
    return (p_o - p_e) / (1 - p_e) if p_e < 1 else math.nan


def pair_rows(scores: Mapping[str, ArrayLike], kept: Mapping[str, ArrayLike]) -> list[Row]:
    """One row per unordered pair of verifiers (in the given order): correlations and kept-set agreement."""
    names = list(scores)
    if set(kept) != set(names):
        raise ValueError(f"kept masks for {sorted(kept)} but scores for {sorted(names)}")
    rows = []
    for a, b in itertools.combinations(names, 2):
        ka, kb = np.asarray(kept[a]) > 0, np.asarray(kept[b]) > 0
        either = int((ka | kb).sum())
        rows.append(
            {
                "verifier_a": a,
                "verifier_b": b,
                "pearson": metrics.score_correlation(scores[a], scores[b]),
                "spearman": metrics.spearman(scores[a], scores[b]),
                "kept_a": float(ka.mean()) if ka.size else math.nan,
                "kept_b": float(kb.mean()) if kb.size else math.nan,
                "agreement": float((ka == kb).mean()) if ka.size else math.nan,
                "kappa": cohen_kappa(ka, kb),
                "jaccard": float((ka & kb).sum() / either) if either else math.nan,
            }
        )
    return rows


def reliability(scores: ArrayLike, correct: ArrayLike, n_bins: int = 10) -> list[Row]:
    """Reliability table: per equal-width bin of the score (as in `metrics.ece`), count, mean score, accuracy."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    ok = ~np.isnan(s)
    s, y = s[ok], y[ok]
    b = np.minimum((np.clip(s, 0, 1) * n_bins).astype(np.intp), n_bins - 1)
    rows = []
    for i in range(n_bins):
        m = b == i
        n = int(m.sum())
        rows.append(
            {
                "bin": i,
                "bin_lo": i / n_bins,
                "bin_hi": (i + 1) / n_bins,
                "n": n,
                "mean_score": float(s[m].mean()) if n else math.nan,
                "accuracy": float(y[m].mean()) if n else math.nan,
            }
        )
    return rows


def calibration_rows(scores: Mapping[str, ArrayLike], correct: ArrayLike, n_bins: int = 10) -> list[Row]:
    """One row per verifier: ECE, mean score vs accuracy, Brier score, and its reliability table (list of bins)."""
    y = np.asarray(correct, dtype=np.float64)
    rows = []
    for name, sc in scores.items():
        s = np.asarray(sc, dtype=np.float64)
        ok = ~np.isnan(s)
        rows.append(
            {
                "verifier": name,
                "ece": metrics.ece(s, y, n_bins),
                "mean_score": float(s[ok].mean()) if ok.any() else math.nan,
                "accuracy": float(y[ok].mean()) if ok.any() else math.nan,
                "brier": float(((s[ok] - y[ok]) ** 2).mean()) if ok.any() else math.nan,
                "n_scored": int(ok.sum()),
                "reliability": reliability(s, y, n_bins),
            }
        )
    return rows
