"""Training batches grouped by length: little padding, deterministic for a seed."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def length_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """One epoch's batches (lists of example indices): a seeded shuffle, sorted by length (ties keep the
    shuffled order), cut into `batch_size` batches, whose order is shuffled again. Every example appears
    once; the number of batches is that of plain shuffled batching."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    order.sort(key=lambda i: lengths[i])  # stable: equal lengths stay in shuffled order
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    return [batches[b] for b in torch.randperm(len(batches), generator=generator).tolist()]


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """One epoch's batches of a plain seeded shuffle (lengths mixed)."""
    order = torch.randperm(n, generator=generator).tolist()
    return [order[s : s + batch_size] for s in range(0, n, batch_size)]


def padding_share(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Padded positions / all positions when each batch is padded to its longest example."""
    total = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - sum(lengths[i] for b in batches for i in b) / max(1, total)
