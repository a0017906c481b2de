"""Filters and ensembles: hand-computed cases (arithmetic in comments) and NaN handling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from selfimprove.filters import (
    and_ensemble,
    apply_empty_policy,
    mean_ensemble,
    quantile_filter,
    rank_average,
    reweight,
    threshold_filter,
    topk_filter,
)
from selfimprove.metrics import filtered_accuracy, gap


def test_quantile_filter_keeps_ties_at_threshold() -> None:
    # n = 5, alpha = 0.4 -> k = ceil(2) = 2; 2nd largest = 0.4 -> both 0.4s kept
    w = quantile_filter(["a"] * 5, [0.1, 0.4, 0.4, 0.9, 0.2], 0.4)
    assert w.tolist() == [0, 1, 1, 1, 0]
    assert w.dtype == np.float64


def test_quantile_filter_is_per_prompt_and_float_safe() -> None:
    # 0.7 * 10 = 7.000000000000001 must give k = 7 (keep scores 3..9), not 8
    assert quantile_filter([0] * 10, np.arange(10.0), 0.7).sum() == 7
    ids = ["a", "a", "b", "b", "b", "b"]
    scores = [5.0, 1.0, 0.1, 0.3, 0.2, 0.4]  # a: k = 1 -> {5}; b: k = 2 -> {0.3, 0.4}
    assert quantile_filter(ids, scores, 0.5).tolist() == [1, 0, 0, 1, 0, 1]
    assert quantile_filter(ids, scores, 1.0).tolist() == [1] * 6
    for alpha in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            quantile_filter(ids, scores, alpha)


def test_quantile_filter_nan_never_kept() -> None:
    ids = ["b"] * 3
    assert quantile_filter(ids, [np.nan, 0.5, np.nan], 1.0).tolist() == [0, 1, 0]
    # k = ceil(0.34 * 3) = 2 -> the 2nd largest is NaN (ranked last): keep the finite score only
    assert quantile_filter(ids, [np.nan, 0.5, np.nan], 0.34).tolist() == [0, 1, 0]
    assert quantile_filter(ids, [np.nan] * 3, 0.5).tolist() == [0, 0, 0]


def test_threshold_filter() -> None:
    assert threshold_filter([0.2, 0.8, np.nan, 0.5], 0.5).tolist() == [0, 1, 0, 1]


def test_topk_filter() -> None:
    ids = ["a"] * 4 + ["b"] * 2
    scores = [3, 1, 2, 2, np.nan, 7]
    # a: 2nd largest = 2 -> {3, 2, 2}; b: {7}, NaN dropped
    assert topk_filter(ids, scores, 2).tolist() == [1, 0, 1, 1, 0, 1]
    assert topk_filter(ids, scores, 10).tolist() == [1, 1, 1, 1, 0, 1]
    with pytest.raises(ValueError):
        topk_filter(ids, scores, 0)


def test_reweight() -> None:
    # exp([0, ln 2]) = [1, 2] -> [1/3, 2/3]; NaN -> 0
    w = reweight(["a", "a", "a", "b"], [0.0, math.log(2), np.nan, 5.0], beta=1.0)
    assert w == pytest.approx([1 / 3, 2 / 3, 0.0, 1.0])
    # stable for large scores: [1, e] / (1 + e)
    w = reweight([0, 0], [1000.0, 1001.0], beta=1.0)
    assert w == pytest.approx([1 / (1 + math.e), math.e / (1 + math.e)])
    # beta scales: exp([0, 2]/2) = [1, e]
    assert reweight([0, 0], [0.0, 2.0], beta=2.0) == pytest.approx([1 / (1 + math.e), math.e / (1 + math.e)])
    assert reweight([0, 0], [np.nan, np.nan], beta=1.0).tolist() == [0, 0]
    with pytest.raises(ValueError):
        reweight([0], [1.0], beta=0.0)


def test_reweight_weighted_accuracy() -> None:
    # correct [1, 0], weights exp([ln 3, 0]) -> [3/4, 1/4]: J_x(f[w]) = 3/4; J_x(f) = 1/2 -> gap 1/4
    w = reweight([0, 0], [math.log(3), 0.0], beta=1.0)
    assert filtered_accuracy([0, 0], [1, 0], w) == pytest.approx(0.75)
    assert gap([0, 0], [1, 0], w) == pytest.approx(0.25)


def test_and_ensemble_hand_case() -> None:
    ids = [0, 0, 0, 0]
    correct = [1, 0, 0, 0]  # J(f) = 1/4
    masks = {"mc": [1, 1, 0, 0], "cot_s": [1, 0, 1, 0]}  # each keeps the correct one plus a wrong one
    both = and_ensemble(masks)
    assert both.tolist() == [1, 0, 0, 0]
    # gaps: MC 1/2 - 1/4, CoT-S 1/2 - 1/4, AND 1 - 1/4
    assert gap(ids, correct, masks["mc"]) == 0.25
    assert gap(ids, correct, masks["cot_s"]) == 0.25
    assert gap(ids, correct, both) == 0.75
    # a list works too; positive float weights count as kept, NaN does not
    assert and_ensemble([[0.2, 0.5, 1.0], [1.0, 0.0, np.nan]]).tolist() == [1, 0, 0]


def test_mean_ensemble() -> None:
    out = mean_ensemble({"a": [0.0, 1.0, np.nan], "b": [1.0, 0.0, 1.0]})
    assert out[:2].tolist() == [0.5, 0.5] and math.isnan(out[2])


def test_rank_average() -> None:
    ids = ["a", "a", "a", "b", "c", "c", "c"]
    s1 = [0.1, 0.5, 0.9, 3.0, np.nan, 1.0, 2.0]
    s2 = [1.0, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    out = rank_average(ids, {"v1": s1, "v2": s2})
    # a: v1 ranks [1, 2, 3] -> [0, .5, 1]; v2 ranks [1.5, 1.5, 3] -> [.25, .25, 1] -> [.125, .375, 1]
    # b: single sample -> 0.5; c: v1 [NaN, 0, 1], v2 all tied [.5, .5, .5] -> [NaN, .25, .75]
    np.testing.assert_array_equal(out, [0.125, 0.375, 1.0, 0.5, np.nan, 0.25, 0.75])
    # usable as a filter score: top-1 per prompt by averaged rank
    assert topk_filter(ids, out, 1).tolist() == [0, 0, 1, 1, 0, 0, 1]


def test_apply_empty_policy() -> None:
    ids = ["a", "a", "a", "b", "b", "c", "c", "d", "d"]
    scores = [0.2, 0.9, 0.9, 0.1, 0.3, np.nan, np.nan, np.nan, 0.1]
    weights = [0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert apply_empty_policy(ids, scores, weights, "skip").tolist() == weights
    # a: best 0.9, first of the tie (index 1); b already kept one; c all NaN stays empty; d -> 0.1
    best = apply_empty_policy(ids, scores, weights, "best")
    assert best.tolist() == [0, 1, 0, 1, 0, 0, 0, 0, 1]
    with pytest.raises(ValueError):
        apply_empty_policy(ids, scores, weights, "drop")  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(3))
def test_nan_scores_do_not_crash_pipeline(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(20), 8)
    correct = rng.uniform(size=ids.size) < 0.4
    scores = rng.uniform(size=ids.size)
    scores[rng.uniform(size=ids.size) < 0.3] = np.nan
    scores[ids == 0] = np.nan  # one prompt with no parseable score at all
    for w in (
        quantile_filter(ids, scores, 0.3),
        topk_filter(ids, scores, 2),
        threshold_filter(scores, 0.5),
        reweight(ids, scores, 0.5),
    ):
        assert not (w[np.isnan(scores)] > 0).any()
        assert np.isfinite(gap(ids, correct, w))
        assert np.isfinite(gap(ids, correct, apply_empty_policy(ids, scores, w, "best")))


def test_tie_rules_on_binary_scores() -> None:
    """The demo's case: 8 samples, binary verdicts, alpha=0.5 (k=4). Prompt p has two 1s: `keep` keeps all 8
    (the cut is 0, every 0 ties it), `drop` keeps the two 1s. Prompt q has five 1s: both keep the five.
    Prompt r has no 1: both keep all 8 (nothing to choose between; the gap of such a prompt is 0)."""
    ids = ["p"] * 8 + ["q"] * 8 + ["r"] * 8
    scores = [1, 1, 0, 0, 0, 0, 0, 0] + [1, 1, 1, 1, 1, 0, 0, 0] + [0] * 8
    keep = quantile_filter(ids, scores, 0.5, ties="keep")
    drop = quantile_filter(ids, scores, 0.5, ties="drop")
    assert keep.tolist() == [1] * 8 + [1] * 5 + [0] * 3 + [1] * 8
    assert drop.tolist() == [1, 1] + [0] * 6 + [1] * 5 + [0] * 3 + [1] * 8
    # graded scores: the cut 0.5 ties three samples; drop keeps what is strictly above it
    assert quantile_filter(["a"] * 5, [0.9, 0.5, 0.5, 0.5, 0.1], 0.5, ties="drop").tolist() == [1, 0, 0, 0, 0]
    assert topk_filter(["a"] * 4, [0.7, 0.7, 0.2, 0.1], 1, ties="drop").tolist() == [1, 1, 0, 0]
    with pytest.raises(ValueError, match="ties must be one of"):
        quantile_filter(ids, scores, 0.5, ties="random")  # type: ignore[arg-type]


def test_drop_only_drops_ties_that_overflow() -> None:
    """Without ties at the cut `drop` keeps exactly the k best, as `keep` does (the sample at the cut stays)."""
    ids = ["a"] * 4
    assert quantile_filter(ids, [0.9, 0.8, 0.1, 0.2], 0.5, ties="drop").tolist() == [1, 1, 0, 0]
    assert topk_filter(ids, [0.9, 0.8, 0.8, 0.2], 3, ties="drop").tolist() == [1, 1, 1, 0]  # ties fit within k
