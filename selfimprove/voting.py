"""Majority vote (self-consistency), the verifier-free baseline: answer classes, vote shares, maj@k.

Pure and numpy only. Samples are grouped per prompt into *answer classes*: answers the task calls
equivalent (`10{,}000` and `10000` on MATH) share a class. The equivalence comes from the caller as a
batch function over answer pairs (see `selfimprove.tasks.base.same_answers`), so the tasks decide it.

Rules, stated once for every function here:
- A sample without an answer (None, NaN or blank) abstains: it has class -1, casts no vote and never wins.
- Clustering: within a prompt, distinct answer strings are taken in first-appearance order; each one
  joins the class of the earliest class representative it is equivalent to, or starts a new class.
- Ties: when several classes share the most votes, each wins with equal probability (the expectation of
  a fair coin), so a prompt whose correct class ties with one wrong class scores 1/2.
- A class's correctness is the mean correctness of its members (1 or 0 when the grader agrees with the
  equivalence, which it does for every built-in task).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from selfimprove.metrics import FloatArray, IntArray, factorize

__all__ = ["SameAnswers", "answer_classes", "maj_at_k", "maj_at_k_curve", "majority_accuracy", "vote_share"]

SameAnswers = Callable[[Sequence[tuple[str, str]]], Sequence[bool]]


def _abstains(a: Any) -> bool:
    return a is None or (isinstance(a, float) and math.isnan(a)) or (isinstance(a, str) and not a.strip())


def answer_classes(prompt_ids: ArrayLike, answers: Sequence[Any], same: SameAnswers | None = None) -> IntArray:
    """Per-sample answer class within its prompt (0, 1, ... in first-appearance order; -1 = no answer).

    `same(pairs)` says for each (representative, answer) pair whether the two are equivalent; it is
    called once with every pair that needs deciding. Without it, equal strings (after `str`) are equal.
    """
    codes, uniq = factorize(prompt_ids)
    if len(answers) != codes.size:
        raise ValueError(f"answers has length {len(answers)}, expected {codes.size}")
    distinct: list[list[str]] = [[] for _ in range(uniq.size)]  # distinct answer strings per prompt
    for g, a in zip(codes.tolist(), answers, strict=True):
        if not _abstains(a) and str(a) not in distinct[g]:
            distinct[g].append(str(a))
    # every (earlier, later) pair of distinct strings of a prompt, decided in one batch
    pairs = [(d[i], d[j]) for d in distinct for j in range(len(d)) for i in range(j)]
    verdicts = dict(zip(pairs, same(pairs) if same and pairs else [False] * len(pairs), strict=True))
    class_of: list[dict[str, int]] = []
    for d in distinct:
        reps: list[str] = []
        mapping: dict[str, int] = {}
        for s in d:
            hit = next((i for i, r in enumerate(reps) if verdicts.get((r, s), False)), None)
            if hit is None:
                reps.append(s)
                hit = len(reps) - 1
            mapping[s] = hit
        class_of.append(mapping)
    return np.fromiter(
        (-1 if _abstains(a) else class_of[g][str(a)] for g, a in zip(codes.tolist(), answers, strict=True)),
        dtype=np.intp,
        count=codes.size,
    )


def _check(prompt_ids: ArrayLike, classes: ArrayLike) -> tuple[IntArray, int, IntArray]:
    codes, uniq = factorize(prompt_ids)
    c = np.asarray(classes, dtype=np.intp)
    if c.shape != codes.shape:
        raise ValueError(f"classes has shape {c.shape}, expected {codes.shape}")
    return codes, int(uniq.size), c


def vote_share(prompt_ids: ArrayLike, classes: ArrayLike) -> FloatArray:
    """Each sample's share of its prompt's votes: (size of its class) / (samples of the prompt); NaN if it abstains.

    Abstaining samples count in the denominator, so a share is the fraction of all N samples that agree.
    As a score it feeds any filter; `filters.majority_filter` keeps the prompt's top share, ties kept.
    """
    codes, n_groups, c = _check(prompt_ids, classes)
    n_g = np.bincount(codes, minlength=n_groups)
    key = codes * (int(c.max(initial=0)) + 2) + (c + 1)  # one id per (prompt, class)
    _, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
    share = counts[inv.ravel()] / n_g[codes]
    return np.where(c < 0, np.nan, share).astype(np.float64)


def _prompt_tally(classes: IntArray, correct: FloatArray) -> tuple[list[int], list[float], int]:
    """(votes per class, correctness per class, abstentions) of one prompt."""
    voted = classes >= 0
    m = int(classes.max(initial=-1)) + 1
    votes = np.bincount(classes[voted], minlength=m)
    right = np.bincount(classes[voted], weights=correct[voted], minlength=m)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(votes > 0, right / np.maximum(votes, 1), 0.0)
    return votes.tolist(), acc.tolist(), int((~voted).sum())


def _maj_expectation(votes: list[int], acc: list[float], abstain: int, k: int) -> float:
    """E over the C(n, k) subsets of k samples of the majority's correctness (ties split evenly).

    For each class j with acc > 0 and each count t >= 1 it takes of the subset, a dynamic programme over
    the other classes counts subsets (weighted by binomials) where every other class takes <= t samples,
    tracking how many take exactly t; the abstainers take any number and never compete.
    """
    n = sum(votes) + abstain
    total = math.comb(n, k)
    value = 0.0
    for j, (nj, aj) in enumerate(zip(votes, acc, strict=True)):
        if aj <= 0 or nj == 0:
            continue
        others = [v for i, v in enumerate(votes) if i != j and v > 0]
        for t in range(1, min(nj, k) + 1):
            # dp[s, u]: ways for the others (and abstainers) to fill s slots with u classes tied at t
            dp = np.zeros((k - t + 1, len(others) + 1))
            dp[0, 0] = 1.0
            for v in others:
                nxt = np.zeros_like(dp)
                for c in range(0, min(v, t) + 1):
                    if c > k - t:
                        break
                    w = math.comb(v, c)
                    if c == t:
                        nxt[c:, 1:] += w * dp[: dp.shape[0] - c, :-1]
                    else:
                        nxt[c:, :] += w * dp[: dp.shape[0] - c, :]
                dp = nxt
            fill = np.array([math.comb(abstain, k - t - s) for s in range(k - t + 1)], dtype=float)
            credit = (fill[:, None] * dp / (1.0 + np.arange(len(others) + 1))[None, :]).sum()
            value += aj * math.comb(nj, t) * credit
    return value / total


def maj_at_k(prompt_ids: ArrayLike, classes: ArrayLike, correct: ArrayLike, k: int) -> float:
    """Mean over prompts of maj@k: the chance that a majority vote over k of the prompt's n samples, drawn
    without replacement, is correct (ties split evenly; abstainers cast no vote). Exact, like pass@k's
    estimator: the expectation over all C(n, k) subsets. maj@1 equals sampling accuracy when no sample
    abstains. `k` must not exceed any prompt's sample count."""
    codes, n_groups, c = _check(prompt_ids, classes)
    y = np.asarray(correct, dtype=np.float64)
    if y.shape != codes.shape:
        raise ValueError(f"correct has shape {y.shape}, expected {codes.shape}")
    if n_groups == 0:
        return math.nan
    n_min = int(np.bincount(codes, minlength=n_groups).min())
    if not 1 <= k <= n_min:
        raise ValueError(f"k={k} outside [1, {n_min}] (min samples per prompt)")
    values = [_maj_expectation(*_prompt_tally(c[codes == g], y[codes == g]), k) for g in range(n_groups)]
    return float(np.mean(values))


def maj_at_k_curve(
    prompt_ids: ArrayLike, classes: ArrayLike, correct: ArrayLike, ks: Sequence[int] | None = None
) -> dict[int, float]:
    """maj@k for each k; default ks = 1, 2, 4, ... up to N plus N (N = min samples per prompt), as pass@k."""
    codes, n_groups, _ = _check(prompt_ids, classes)
    if n_groups == 0:
        return {}
    n_min = int(np.bincount(codes, minlength=n_groups).min())
    if ks is None:
        ks = [2**i for i in range(n_min.bit_length()) if 2**i <= n_min]
        if ks[-1] != n_min:
            ks = [*ks, n_min]
    return {int(k): maj_at_k(prompt_ids, classes, correct, int(k)) for k in ks}


def majority_accuracy(prompt_ids: ArrayLike, classes: ArrayLike, correct: ArrayLike) -> float:
    """maj@n with each prompt's own n: the vote over all its samples (ties split evenly), mean over prompts."""
    codes, n_groups, c = _check(prompt_ids, classes)
    y = np.asarray(correct, dtype=np.float64)
    vals = []
    for g in range(n_groups):
        votes, acc, abstain = _prompt_tally(c[codes == g], y[codes == g])
        vals.append(_maj_expectation(votes, acc, abstain, sum(votes) + abstain))
    return float(np.mean(vals)) if vals else math.nan
