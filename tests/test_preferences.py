"""Preference pairs from the verifier's ranking, against pairs worked out by hand."""

import math

import pytest

from selfimprove.preferences import preference_pairs


def test_pairs_by_hand():
    # prompt a: kept 0 (0.9) and 2 (0.7); dropped 1 (0.2), 3 (NaN: worst). C = [0, 2], R = [3, 1].
    # d=0: (0,3), (2,1); d=1: (0,1), (2,3). Prompt b keeps everything: no pairs. Prompt c: kept 6 (1), dropped 7 (1):
    # equal scores, skipped.
    ids = ["a"] * 4 + ["b"] * 2 + ["c"] * 2
    scores = [0.9, 0.2, 0.7, math.nan, 0.5, 0.4, 1.0, 1.0]
    weights = [1, 0, 1, 0, 1, 1, 1, 0]
    assert preference_pairs(ids, scores, weights, 10) == [(0, 3), (2, 1), (0, 1), (2, 3)]
    assert preference_pairs(ids, scores, weights, 2) == [(0, 3), (2, 1)]
    # the same completion on both sides teaches nothing
    texts = ["x", "x", "y", "z", "p", "q", "r", "s"]
    assert preference_pairs(ids, scores, weights, 10, texts) == [(0, 3), (2, 1), (2, 3)]
    with pytest.raises(ValueError, match="max_pairs"):
        preference_pairs(ids, scores, weights, 0)
