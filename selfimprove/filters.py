"""Pure filters turning verifier scores into sample weights (Song et al., ICLR 2025, §2-§3, §6).

Every filter returns a float weight array aligned with its inputs; 0 means dropped and the kept mask
is `weights > 0`. NaN scores (unparseable verifier output) are never kept. Ensembles combine
per-verifier masks or scores given as a dict name -> array or as a list of arrays. numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from selfimprove.metrics import FloatArray, IntArray, factorize, group_average_ranks
from selfimprove.voting import vote_share

__all__ = [
    "FILTERS",
    "TIES",
    "Filter",
    "and_ensemble",
    "apply_empty_policy",
    "majority_filter",
    "mean_ensemble",
    "quantile_filter",
    "rank_average",
    "reweight",
    "threshold_filter",
    "topk_filter",
]

ArrayCollection = Mapping[str, ArrayLike] | Sequence[ArrayLike]
Ties = Literal["keep", "drop"]
# The tie rules of the per-prompt filters (quantile, top-k), for samples whose score equals the cut:
TIES = {
    "keep": "keep every sample scoring >= the cut (the paper's literal rule); on binary scores a prompt with "
    "fewer than k passing samples keeps all of its samples, 0-scored ones included",
    "drop": "keep exactly the k best when no tie crosses the cut; when more than k samples reach the cut, keep those "
    "strictly above it, or, if none is (the cut is the top score), the top-scored ones; on binary scores: the 1s "
    "of every prompt that has one, all of a prompt that has none",
}


def _scores(prompt_ids: ArrayLike, scores: ArrayLike) -> tuple[IntArray, int, FloatArray]:
    codes, uniq = factorize(prompt_ids)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != codes.shape:
        raise ValueError(f"scores has shape {s.shape}, expected {codes.shape}")
    return codes, int(uniq.size), s


def _keep_top(codes: IntArray, n_groups: int, s: FloatArray, k_g: IntArray, ties: Ties = "keep") -> FloatArray:
    """Keep the samples at or above the k_g-th largest score (the cut) of each group, ties by `TIES[ties]`.

    NaN scores are ranked last and never kept.
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {sorted(TIES)}, got {ties!r}")
    if s.size == 0:
        return np.zeros(0)
    ranked = np.where(np.isnan(s), -np.inf, s)
    order = np.lexsort((-ranked, codes))
    counts = np.bincount(codes, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    thr = ranked[order][starts + k_g - 1][codes]
    if ties == "keep":
        keep = ranked >= thr
    else:  # ties overflow k only when more than k samples reach the cut; then keep what is above it
        at_least = ranked >= thr
        overflow = (np.bincount(codes, weights=at_least, minlength=n_groups) > k_g)[codes]
        top = ranked[order][starts][codes]
        keep = np.where(overflow, (ranked > thr) | ((thr == top) & (ranked == top)), at_least)
    return (keep & ~np.isnan(s)).astype(np.float64)


def quantile_filter(prompt_ids: ArrayLike, scores: ArrayLike, alpha: float, ties: Ties = "keep") -> FloatArray:
    """Keep each prompt's top `alpha` fraction by score ("top n" in the paper); ties at the cut by `TIES[ties]`.

    The threshold is the k-th largest score of the prompt with k = ceil(alpha * n) (n = the prompt's
    sample count, NaN scores ranked last; alpha * n is rounded to 1e-9 before the ceil so 0.7 * 10
    gives k = 7), i.e. the lower empirical (1 - alpha) quantile (the cut).
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    codes, n_groups, s = _scores(prompt_ids, scores)
    n_g = np.bincount(codes, minlength=n_groups)
    k_g = np.maximum(np.ceil(np.round(alpha * n_g, 9)).astype(np.intp), 1)
    return _keep_top(codes, n_groups, s, k_g, ties)


def threshold_filter(scores: ArrayLike, tau: float) -> FloatArray:
    """Keep score >= tau with one global threshold ("tau = n" in the paper)."""
    s = np.asarray(scores, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (s >= tau).astype(np.float64)


def topk_filter(prompt_ids: ArrayLike, scores: ArrayLike, k: int, ties: Ties = "keep") -> FloatArray:
    """Keep each prompt's k highest-scored samples (all of them if fewer); ties at the k-th score by `TIES[ties]`."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    codes, n_groups, s = _scores(prompt_ids, scores)
    k_g = np.minimum(np.bincount(codes, minlength=n_groups), k).astype(np.intp)
    return _keep_top(codes, n_groups, s, k_g, ties)


def majority_filter(prompt_ids: ArrayLike, classes: ArrayLike) -> FloatArray:
    """Keep the samples whose answer class is its prompt's most frequent (self-consistency; no verifier).

    `classes` from `voting.answer_classes` (-1 = no answer, never kept). Tied top classes are all kept,
    so a prompt's kept accuracy is the even tie split of `voting.maj_at_k`, and J(f[w]) = maj@n.
    """
    return topk_filter(prompt_ids, vote_share(prompt_ids, classes), 1, ties="keep")


def reweight(prompt_ids: ArrayLike, scores: ArrayLike, beta: float) -> FloatArray:
    """KL-regularised reweighting (Ex. 2.1): exp(score / beta) normalised to sum 1 per prompt.

    Computed as exp((score - prompt max) / beta); NaN scores get 0 (all-NaN prompts sum to 0).
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    codes, n_groups, s = _scores(prompt_ids, scores)
    valid = ~np.isnan(s)
    s0 = np.where(valid, s, -np.inf)
    m = np.full(n_groups, -np.inf)
    np.maximum.at(m, codes, s0)
    with np.errstate(invalid="ignore"):
        e = np.where(valid, np.exp((s0 - m[codes]) / beta), 0.0)
    total = np.bincount(codes, weights=e, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total[codes] > 0, e / total[codes], 0.0)


def _stack(arrays: ArrayCollection) -> FloatArray:
    items = list(arrays.values()) if isinstance(arrays, Mapping) else list(arrays)
    if not items:
        raise ValueError("need at least one array")
    out = np.vstack([np.asarray(a, dtype=np.float64) for a in items])
    if out.ndim != 2:
        raise ValueError("arrays must be 1-D and of equal length")
    return out


def and_ensemble(masks: ArrayCollection) -> FloatArray:
    """Keep a sample only if every verifier's filter keeps it (each mask/weights > 0); returns 0/1."""
    with np.errstate(invalid="ignore"):
        return (_stack(masks) > 0).all(axis=0).astype(np.float64)


def mean_ensemble(score_arrays: ArrayCollection) -> FloatArray:
    """Element-wise mean of the verifiers' scores (a score, to feed a filter); NaN if any is NaN."""
    return _stack(score_arrays).mean(axis=0)


def rank_average(prompt_ids: ArrayLike, score_arrays: ArrayCollection) -> FloatArray:
    """Per-prompt average rank over verifiers, each rank normalised to [0, 1] (a score).

    Within a prompt a verifier's average (tie-averaged) rank r among its m non-NaN scores maps to
    (r - 1) / (m - 1), or 0.5 when m = 1; a NaN score makes the sample's result NaN.
    """
    codes, uniq = factorize(prompt_ids)
    stacked = _stack(score_arrays)
    if stacked.shape[1] != codes.size:
        raise ValueError(f"score arrays have length {stacked.shape[1]}, expected {codes.size}")
    out = np.zeros(codes.size)
    for s in stacked:
        m = np.bincount(codes, weights=~np.isnan(s), minlength=uniq.size)[codes]
        r = group_average_ranks(codes, s)
        with np.errstate(invalid="ignore", divide="ignore"):
            out += np.where(m > 1, (r - 1.0) / (m - 1.0), np.where(np.isnan(r), np.nan, 0.5))
    return out / stacked.shape[0]


def apply_empty_policy(
    prompt_ids: ArrayLike, scores: ArrayLike, weights: ArrayLike, policy: Literal["skip", "best"]
) -> FloatArray:
    """Training-set rule for prompts whose filter kept nothing.

    "skip": unchanged (such prompts contribute no training samples). "best": give weight 1 to the
    highest-scored non-NaN sample (the first one on ties) of each such prompt; all-NaN prompts stay empty.
    """
    codes, n_groups, s = _scores(prompt_ids, scores)
    w = np.asarray(weights, dtype=np.float64).copy()
    if w.shape != codes.shape:
        raise ValueError(f"weights has shape {w.shape}, expected {codes.shape}")
    if policy == "skip":
        return w
    if policy != "best":
        raise ValueError(f"policy must be 'skip' or 'best', got {policy!r}")
    kept = np.bincount(codes, weights=(w > 0), minlength=n_groups)
    empty = kept[codes] == 0
    if not empty.any():
        return w
    ranked = np.where(np.isnan(s), -math.inf, s)
    order = np.lexsort((np.arange(s.size), -ranked, codes))  # best first, earliest on ties
    first = np.r_[True, codes[order][1:] != codes[order][:-1]]
    best = order[first]
    pick = best[empty[best] & ~np.isnan(s[best])]
    w[pick] = 1.0
    return w


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Filter:
    """A selection rule as configured by name: `apply(prompt_ids, scores, value, ties)` with `value` the spec
    field `param` (FilterSpec.alpha, .tau, .k or .beta; None for majority) and `ties` a `TIES` rule, which only
    the per-prompt cuts read (`uses_ties`). `scores` are the verifiers' scores, or, for `needs = "answers"`, each
    sample's vote share (`voting.vote_share` of its answer class)."""

    apply: Callable[[ArrayLike, ArrayLike, float | None, Ties], FloatArray]
    param: str | None
    needs: Literal["scores", "answers"] = "scores"
    uses_ties: bool = False  # whether `filter.ties` changes what it keeps


FILTERS: dict[str, Filter] = {
    "quantile": Filter(lambda ids, s, a, ties: quantile_filter(ids, s, float(a), ties), "alpha", uses_ties=True),
    "threshold": Filter(lambda ids, s, tau, ties: threshold_filter(s, float(tau)), "tau"),
    "topk": Filter(lambda ids, s, k, ties: topk_filter(ids, s, int(k), ties), "k", uses_ties=True),
    "reweight": Filter(lambda ids, s, beta, ties: reweight(ids, s, float(beta)), "beta"),
    # the prompt's most frequent answer: the top vote share, tied answers all kept (= majority_filter)
    "majority": Filter(lambda ids, share, _, ties: topk_filter(ids, share, 1, "keep"), None, "answers"),
}
