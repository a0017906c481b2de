"""LoRA batches grouped by length: less padding than shuffled batches, every example once, deterministic."""

from __future__ import annotations

import random

import torch

from selfimprove.resources.batching import length_batches, padding_share, shuffled_batches


def lengths(n: int = 200) -> list[int]:
    rng = random.Random(0)
    return [rng.randint(29, 61) for _ in range(n)]  # the spread of a demo round's training examples


def test_grouping_cuts_padding_and_keeps_every_example() -> None:
    ls = lengths()
    grouped = length_batches(ls, 32, torch.Generator().manual_seed(1))
    plain = shuffled_batches(len(ls), 32, torch.Generator().manual_seed(1))
    assert sorted(i for b in grouped for i in b) == list(range(len(ls)))
    assert [len(b) for b in sorted(grouped, key=len)] == [len(b) for b in sorted(plain, key=len)]
    assert padding_share(ls, plain) > 0.15  # mixed lengths 29..61: about a fifth of the positions is padding
    assert padding_share(ls, grouped) < padding_share(ls, plain) / 3
    widths = sorted(max(ls[i] for i in b) - min(ls[i] for i in b) for b in grouped)
    assert widths[-1] <= 7  # 7 batches over 33 lengths: each spans a few lengths only


def test_same_seed_same_batches_other_seed_other_batches() -> None:
    ls = lengths()
    a = length_batches(ls, 32, torch.Generator().manual_seed(7))
    b = length_batches(ls, 32, torch.Generator().manual_seed(7))
    c = length_batches(ls, 32, torch.Generator().manual_seed(8))
    assert a == b and a != c
    g = torch.Generator().manual_seed(7)  # successive epochs draw successive batches from one generator
    assert length_batches(ls, 32, g) == a and length_batches(ls, 32, g) != a


def test_padding_share_by_hand() -> None:
    assert padding_share([2, 4, 4], [[0, 1], [2]]) == 1 - 10 / 12
    assert padding_share([3, 3], [[0, 1]]) == 0
