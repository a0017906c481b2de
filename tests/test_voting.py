"""Majority vote against references worked out by hand (voting.py, filters.majority_filter)."""

import itertools
import math

import numpy as np
import pytest

from selfimprove import filters, metrics, voting
from selfimprove.tasks.base import same_answers
from selfimprove.tasks.gsm8k import GSM8KTask
from selfimprove.tasks.math import MathTask
from selfimprove.tasks.nq import NQOpenTask

# Prompt "a": answers 5, 5, 7 and one sample with no answer; the two 5s are right.
A_IDS = ["a"] * 4
A_ANS = ["5", "5", "7", None]
A_OK = [1, 1, 0, 0]


def test_classes_abstain_and_first_appearance():
    assert voting.answer_classes(A_IDS, A_ANS).tolist() == [0, 0, 1, -1]
    assert voting.answer_classes(["p", "q", "p"], ["3", "3", " "]).tolist() == [0, 0, -1]


def test_maj_at_k_by_hand():
    # By hand, over the C(4, k) subsets (ties split evenly, the answerless sample casts no vote):
    # k=1: {5},{5} right, {7},{-} wrong -> 2/4. k=2: {5,5} 1; {5,7} x2 tie 1/2; {5,-} x2 1; {7,-} 0 -> 4/6.
    # k=3: {5,5,7} 1; {5,5,-} 1; {5,7,-} x2 tie 1/2 -> 3/4. k=4: 5 wins 2-1 -> 1.
    c = voting.answer_classes(A_IDS, A_ANS)
    assert voting.maj_at_k_curve(A_IDS, c, A_OK, [1, 2, 3, 4]) == pytest.approx({1: 0.5, 2: 4 / 6, 3: 0.75, 4: 1.0})
    assert voting.majority_accuracy(A_IDS, c, A_OK) == pytest.approx(1.0)


def test_maj_at_1_is_sampling_accuracy_without_abstentions():
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(20), 8)
    ans = rng.integers(0, 3, ids.size).astype(str).tolist()
    ok = [a == "0" for a in ans]
    c = voting.answer_classes(ids, ans)
    assert voting.maj_at_k(ids, c, ok, 1) == pytest.approx(metrics.sampling_accuracy(ids, ok))


def test_maj_at_k_matches_enumeration():
    """The dynamic programme against brute force over every k-subset (random ties, abstainers)."""
    rng = np.random.default_rng(1)
    for _ in range(10):
        n = int(rng.integers(3, 9))
        cls = rng.integers(-1, 3, n)
        right = rng.integers(0, 3)
        ok = (cls == right).astype(float)
        for k in range(1, n + 1):
            vals = []
            for sub in itertools.combinations(range(n), k):
                votes = {}
                for i in sub:
                    if cls[i] >= 0:
                        votes[cls[i]] = votes.get(cls[i], 0) + 1
                if not votes:
                    vals.append(0.0)
                    continue
                top = max(votes.values())
                winners = [c for c, v in votes.items() if v == top]
                vals.append(sum(c == right for c in winners) / len(winners))
            assert voting.maj_at_k(["x"] * n, cls, ok, k) == pytest.approx(float(np.mean(vals)))


def test_equivalent_answers_written_differently():
    """`10{,}000` and `10000` are one answer on MATH (math-verify) and GSM8K (numeric): they win the vote;
    compared as text, three answers tie and the right one wins 2/3 of the time (two of three are right)."""
    ids = ["m"] * 4
    ans = ["10{,}000", "10000", "9000", None]
    ok = [1, 1, 0, 0]
    text = voting.answer_classes(ids, ans)
    assert text.tolist() == [0, 1, 2, -1]
    assert voting.majority_accuracy(ids, text, ok) == pytest.approx(2 / 3)
    for task in (MathTask(path="unused"), GSM8KTask()):
        same = voting.answer_classes(ids, ans, same_answers(task))
        assert same.tolist() == [0, 0, 1, -1], type(task).__name__
        assert voting.majority_accuracy(ids, same, ok) == 1.0
    nq = voting.answer_classes(["q"] * 3, ["The Beatles", "beatles", "Queen"], same_answers(NQOpenTask(path="x")))
    assert nq.tolist() == [0, 0, 1]


def test_vote_share_and_majority_filter():
    ids = ["a"] * 4 + ["b"] * 4
    ans = ["5", "5", "7", None, "1", "2", "2", "1"]
    ok = [1, 1, 0, 0, 0, 1, 1, 0]
    c = voting.answer_classes(ids, ans)
    share = voting.vote_share(ids, c)
    np.testing.assert_allclose(share[:3], [0.5, 0.5, 0.25])
    assert math.isnan(share[3])
    w = filters.majority_filter(ids, c)
    # prompt a keeps its two 5s; prompt b's classes tie 2-2: both kept (kept accuracy 1/2 = the even split)
    assert w.tolist() == [1, 1, 0, 0, 1, 1, 1, 1]
    assert metrics.filtered_accuracy(ids, ok, w) == pytest.approx(voting.majority_accuracy(ids, c, ok))


def test_bad_input_named():
    with pytest.raises(ValueError, match="k=5 outside"):
        voting.maj_at_k(A_IDS, [0, 0, 1, -1], A_OK, 5)
    with pytest.raises(ValueError, match="answers has length"):
        voting.answer_classes(A_IDS, A_ANS[:3])
