"""Metrics: hand-computed cases (arithmetic in comments) and seeded property tests."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from selfimprove.filters import quantile_filter, topk_filter
from selfimprove.metrics import (
    GapResult,
    accuracy_at_threshold,
    auroc,
    bootstrap_ci,
    distinct_answers,
    ece,
    factorize,
    filtered_accuracy,
    gap,
    gap_with_ci,
    linear_fit,
    pass_at_k,
    pass_at_k_curve,
    per_prompt_accuracy,
    relative_gap,
    sampling_accuracy,
    score_correlation,
    spearman,
    within_prompt_auroc,
)

# a: 1/4 correct, b: 2/2, c: 1/2
IDS = ["a", "a", "a", "a", "b", "b", "c", "c"]
CORRECT = [1, 0, 0, 0, 1, 1, 0, 1]
# a keeps {1, 0} -> 1/2; b keeps nothing -> falls back to J_b(f) = 1; c keeps {1} -> 1
WEIGHTS = [1, 1, 0, 0, 0, 0, 0, 1]


def _random_case(rng: np.random.Generator, n_prompts: int, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.repeat(np.arange(n_prompts), n_samples)
    p = rng.uniform(0, 1, n_prompts)
    correct = rng.uniform(0, 1, ids.size) < p[ids]
    return ids, correct


# --------------------------------------------------------------------------- accuracy and gap


def test_factorize_first_appearance_and_mixed_ids() -> None:
    codes, uniq = factorize(["b", "a", "b", 1])
    assert codes.tolist() == [0, 1, 0, 2]
    assert uniq.tolist() == ["b", "a", 1]
    codes, uniq = factorize(np.array([3, 1, 3]))
    assert codes.tolist() == [0, 1, 0] and uniq.tolist() == [3, 1]


def test_accuracies_hand_case() -> None:
    assert per_prompt_accuracy(IDS, CORRECT) == {"a": 0.25, "b": 1.0, "c": 0.5}
    # J(f) = (1/4 + 1 + 1/2) / 3 = 7/12
    assert sampling_accuracy(IDS, CORRECT) == pytest.approx(7 / 12, abs=1e-15)
    # J(f[w]) = (1/2 + 1 + 1) / 3 = 5/6
    assert filtered_accuracy(IDS, CORRECT, WEIGHTS) == pytest.approx(5 / 6, abs=1e-15)
    # gap = 5/6 - 7/12 = 1/4
    assert gap(IDS, CORRECT, WEIGHTS) == pytest.approx(0.25, abs=1e-15)
    # a: (1/2 - 1/4) / (3/4) = 1/3; c: (1 - 1/2) / (1/2) = 1; b excluded -> (1/3 + 1) / 2 = 2/3
    value, n_excluded = relative_gap(IDS, CORRECT, WEIGHTS)
    assert value == pytest.approx(2 / 3, abs=1e-15)
    assert n_excluded == 1


def test_weighted_filtered_accuracy() -> None:
    # (0.5*1 + 0.25*0 + 0.25*1) / 1 = 0.75; unnormalised weights give the same mean
    assert filtered_accuracy([0] * 4, [1, 0, 1, 0], [0.5, 0.25, 0.25, 0]) == 0.75
    assert filtered_accuracy([0] * 4, [1, 0, 1, 0], [2, 1, 1, 0]) == 0.75


def test_empty_filter_prompt_contributes_unfiltered_accuracy() -> None:
    ids = ["x", "x", "y", "y", "y", "y"]
    correct = [1, 0, 1, 1, 0, 0]
    weights = [1, 0, 0, 0, 0, 0]  # y keeps nothing
    # x: 1; y: J_y(f) = 1/2 -> J(f[w]) = 3/4; J(f) = (1/2 + 1/2)/2 = 1/2; gap = 1/4
    assert filtered_accuracy(ids, correct, weights) == 0.75
    assert gap(ids, correct, weights) == 0.25
    # relative: x: (1 - 1/2)/(1/2) = 1; y: 0 -> 1/2
    assert relative_gap(ids, correct, weights) == (0.5, 0)
    # all empty -> J(f[w]) == J(f) exactly
    assert gap(ids, correct, np.zeros(6)) == 0.0


def test_relative_gap_nan_when_all_prompts_solved() -> None:
    value, n_excluded = relative_gap(["a", "a", "b"], [1, 1, 1], [1, 0, 1])
    assert math.isnan(value) and n_excluded == 2


def test_invalid_weights_raise() -> None:
    with pytest.raises(ValueError):
        gap([0, 0], [1, 0], [1, -1])
    with pytest.raises(ValueError):
        gap([0, 0], [1, 0], [1, np.nan])
    with pytest.raises(ValueError):
        gap([0, 0], [1, 0], [1, 0, 1])


@pytest.mark.parametrize("seed", range(5))
def test_constant_verifier_gives_exactly_zero_gap(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids, correct = _random_case(rng, 40, 16)
    scores = np.full(ids.size, 0.3)
    for alpha in (0.1, 0.5, 0.7, 1.0):
        w = quantile_filter(ids, scores, alpha)
        assert (w == 1).all()  # ties at the threshold are all kept
        assert gap(ids, correct, w) == 0.0
        assert relative_gap(ids, correct, w)[0] == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_relative_gap_is_one_when_filter_keeps_exactly_the_correct(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids, correct = _random_case(rng, 30, 8)
    # force every prompt to be mixed (0 < J_x < 1), then append 3 solved prompts (excluded)
    correct[::8] = True
    correct[1::8] = False
    ids = np.r_[ids, np.repeat([100, 101, 102], 4)]
    correct = np.r_[correct, np.ones(12, dtype=bool)]
    value, n_excluded = relative_gap(ids, correct, correct)
    assert value == 1.0
    assert n_excluded == 3


@pytest.mark.parametrize("seed", range(5))
def test_oracle_verifier_gap(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 16
    ids, correct = _random_case(rng, 50, n)
    solved_any = np.mean([correct[ids == p].any() for p in range(50)])
    expected = solved_any - sampling_accuracy(ids, correct)
    scores = correct.astype(float)
    for w in (topk_filter(ids, scores, 1), quantile_filter(ids, scores, 1 / n)):
        assert gap(ids, correct, w) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_deterministic_and_contains_point() -> None:
    rng = np.random.default_rng(1)
    ids, correct = _random_case(rng, 100, 8)
    w = quantile_filter(ids, correct + rng.normal(0, 0.7, ids.size), 0.5)
    r1 = gap_with_ci(ids, correct, w, n_boot=300, seed=7)
    r2 = gap_with_ci(ids, correct, w, n_boot=300, seed=7)
    r3 = gap_with_ci(ids, correct, w, n_boot=300, seed=8)
    assert r1 == r2
    assert r1.gap_ci != r3.gap_ci
    assert isinstance(r1, GapResult)
    assert r1.gap_ci[0] <= r1.gap <= r1.gap_ci[1]
    assert r1.relative_gap_ci[0] <= r1.relative_gap <= r1.relative_gap_ci[1]
    assert r1.gap == pytest.approx(gap(ids, correct, w), abs=1e-15)
    assert (r1.relative_gap, r1.n_excluded) == relative_gap(ids, correct, w)
    assert r1.j_f == sampling_accuracy(ids, correct)
    assert r1.j_fw == filtered_accuracy(ids, correct, w)
    assert r1.n_prompts == 100
    assert r1.kept_fraction == np.mean(w > 0)


def test_bootstrap_ci_degenerate_and_custom_statistic() -> None:
    # every prompt has the same per-prompt value -> CI collapses to it
    values = np.array([0.25, 0.25, 0.25])
    assert bootstrap_ci(["a", "b", "c"], lambda idx: values[idx].mean(axis=1), n_boot=50) == (0.25, 0.25)
    # resampling draws prompt positions in [0, G), one resample per row
    seen: list[np.ndarray] = []
    bootstrap_ci(["a", "a", "b"], lambda idx: seen.append(idx) or np.zeros(len(idx)), n_boot=20, seed=3)
    assert sum(len(s) for s in seen) == 20
    assert all(s.shape[1] == 2 and s.min() >= 0 and s.max() <= 1 for s in seen)


def _reference_ci(ids: np.ndarray, per_prompt: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """The percentile CI of the mean with one resample drawn at a time (the definition)."""
    g = np.unique(ids).size
    rng = np.random.default_rng(seed)
    stats = [per_prompt[rng.integers(0, g, g)].mean() for _ in range(n_boot)]
    lo, hi = np.nanquantile(stats, [0.025, 0.975])
    return float(lo), float(hi)


@pytest.mark.parametrize("block", [1 << 20, 7, 1])
def test_bootstrap_ci_blocks_draw_the_resamples_one_at_a_time_would(
    monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    """Resampling in blocks (vectorised) draws exactly the resamples a loop over single draws does, whatever
    the block size: same CI bounds to the last bit, so earlier results stay reproducible."""
    import selfimprove.metrics as m

    monkeypatch.setattr(m, "BOOTSTRAP_BLOCK", block)
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(37), 4)
    per_prompt = rng.uniform(size=37)
    got = bootstrap_ci(ids, lambda idx: per_prompt[idx].mean(axis=1), n_boot=333, seed=5)
    assert got == _reference_ci(ids, per_prompt, 333, 5)


def test_gap_ci_matches_the_per_resample_definition() -> None:
    rng = np.random.default_rng(0)
    ids, correct = _random_case(rng, 120, 8)
    w = quantile_filter(ids, rng.uniform(size=ids.size), 0.5)
    res = gap_with_ci(ids, correct, w, n_boot=400, seed=2)
    jx = np.array([correct[ids == p].mean() for p in np.unique(ids)])
    jwx = np.array([(correct * w)[ids == p].sum() / w[ids == p].sum() for p in np.unique(ids)])
    assert res.gap_ci == pytest.approx(_reference_ci(ids, jwx - jx, 400, 2), abs=1e-12)
    assert res.gap_ci[0] <= res.gap <= res.gap_ci[1]


# --------------------------------------------------------------------------- verifier quality


def test_auroc_cases() -> None:
    y = [0, 0, 1, 1]
    assert auroc([0.1, 0.2, 0.8, 0.9], y) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], y) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], y) == 0.5
    # pos {0.5, 0.9} vs neg {0.1, 0.5}: 1 + 1/2 + 1 + 1 = 3.5 of 4 pairs
    assert auroc([0.1, 0.5, 0.5, 0.9], [0, 1, 0, 1]) == 0.875
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))
    # NaN scores are dropped: remaining pos {0.8} vs neg {0.1}
    assert auroc([0.1, np.nan, 0.8], [0, 0, 1]) == 1.0


def test_within_prompt_auroc() -> None:
    ids = ["a", "a", "a", "b", "b", "c", "c"]
    scores = [0.9, 0.1, 0.5, 0.2, 0.8, 0.3, 0.4]
    labels = [1, 0, 0, 1, 0, 1, 1]  # a: AUROC 1; b: AUROC 0; c: one class, skipped
    assert within_prompt_auroc(ids, scores, labels) == (0.5, 2)
    value, n = within_prompt_auroc(["a", "a"], [0.1, 0.2], [1, 1])
    assert math.isnan(value) and n == 0


def test_accuracy_at_threshold() -> None:
    # predictions [0, 1, 1, 0 (NaN)] vs labels [0, 1, 0, 1] -> 2/4
    assert accuracy_at_threshold([0.2, 0.6, 0.7, np.nan], [0, 1, 0, 1], 0.5) == 0.5
    assert accuracy_at_threshold([0.5, 0.4], [1, 0], 0.5) == 1.0  # >= tau predicts correct


def test_ece_hand_case() -> None:
    # bins (width 0.1): 0.05->0, 0.15->1, 0.85->8, {0.95, 0.9}->9
    # |0-.05| + |0-.15| + |1-.85| + 2*|0.5-0.925| = .05+.15+.15+.85 = 1.2 -> 1.2/5 = 0.24
    assert ece([0.05, 0.15, 0.85, 0.95, 0.9], [0, 0, 1, 1, 0]) == pytest.approx(0.24, abs=1e-12)
    assert ece([0.25] * 4, [1, 0, 0, 0]) == 0.0
    # p = 1.0 lands in the last bin; 2 bins: {0.2} -> |0-.2|, {1.0, 0.6} -> 2*|1-.8| -> (.2+.4)/3
    assert ece([0.2, 1.0, 0.6], [0, 1, 1], n_bins=2) == pytest.approx(0.2, abs=1e-12)
    with pytest.raises(ValueError):
        ece([1.5], [1])


def test_correlations() -> None:
    assert score_correlation([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert score_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # dx = [-1, 0, 1], dy = [-1, 1, 0]: 1 / sqrt(2 * 2) = 0.5
    assert score_correlation([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert math.isnan(score_correlation([1, 1, 1], [1, 2, 3]))
    assert spearman([1, 2, 3], [1, 10, 100]) == pytest.approx(1.0)
    # ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4]: 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(3 / math.sqrt(10))
    # NaN pairs dropped
    assert spearman([1, np.nan, 2, 3], [3, 0, 2, 1]) == pytest.approx(-1.0)


# --------------------------------------------------------------------------- diversity and fit


def _brute_pass_at_k(n: int, c: int, k: int) -> float:
    outcomes = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(outcomes, k))
    return sum(any(s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_enumeration() -> None:
    assert pass_at_k(4, 1, 2) == 0.5  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k), abs=1e-12)
    assert 0.0 <= pass_at_k(1000, 3, 500) <= 1.0  # stable where the binomials overflow
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_pass_at_k_curve() -> None:
    ids = ["a"] * 4 + ["b"] * 4 + ["c"] * 5
    correct = [1, 0, 0, 0] + [0] * 4 + [1] * 5
    # N = 4 -> ks 1, 2, 4. a: 1/4, 1/2, 1; b: 0; c: 1
    curve = pass_at_k_curve(ids, correct)
    assert list(curve) == [1, 2, 4]
    assert curve[1] == pytest.approx(1.25 / 3)
    assert curve[2] == pytest.approx(0.5)
    assert curve[4] == pytest.approx(2 / 3)
    assert list(pass_at_k_curve([0] * 6, [1] * 6)) == [1, 2, 4, 6]
    assert pass_at_k_curve(ids, correct, ks=[3]) == {3: pytest.approx((0.75 + 0 + 1) / 3)}
    with pytest.raises(ValueError):
        pass_at_k_curve(ids, correct, ks=[5])


def test_distinct_answers() -> None:
    ids = ["a", "a", "a", "a", "b", "b", "c"]
    answers = ["1", "1", "2", None, None, float("nan"), "x"]
    assert distinct_answers(ids, answers) == 1.0  # (2 + 0 + 1) / 3


def test_linear_fit() -> None:
    assert linear_fit([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx((2.0, 1.0, 1.0))
    # slope 1/2, intercept 1/2; residuals [-.5, 1, -.5] -> 1 - 1.5/2 = 0.25
    assert linear_fit([0, 1, 2], [0, 2, 1]) == pytest.approx((0.5, 0.5, 0.25))
    with pytest.raises(ValueError):
        linear_fit([1, 1], [0, 1])
