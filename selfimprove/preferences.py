"""Preference pairs from a verifier's ranking within each prompt (for DPO / RPO updates). Pure, numpy only.

Within a prompt, *chosen* candidates are the samples the filter kept (weight > 0), best score first;
*rejected* candidates are the samples it dropped, worst score first (a NaN score, unparseable verifier
output, counts as the worst). Ties keep sample order. Pairs are taken in the order (C[i], R[(i + d) mod |R|])
for d = 0, 1, ..., |R| - 1 and, within each d, i = 0, ..., |C| - 1 (first the best chosen with the worst
rejected, the second best with the second worst, ...; every combination at most once), until `max_pairs`;
a pair is skipped unless the chosen score is strictly higher and, when `texts` is given, the two
completions differ (the same text would teach nothing). Prompts that kept all or none of their samples
give no pairs.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from selfimprove.metrics import factorize

__all__ = ["preference_pairs"]


def preference_pairs(
    prompt_ids: ArrayLike,
    scores: ArrayLike,
    weights: ArrayLike,
    max_pairs: int,
    texts: list[str] | None = None,
) -> list[tuple[int, int]]:
    """(chosen, rejected) sample positions, prompts in first-appearance order (see the module docstring)."""
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
    codes, uniq = factorize(prompt_ids)
    s = np.asarray(scores, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if s.shape != codes.shape or w.shape != codes.shape:
        raise ValueError(f"scores {s.shape} and weights {w.shape} must match prompt_ids {codes.shape}")
    if texts is not None and len(texts) != codes.size:
        raise ValueError(f"texts has length {len(texts)}, expected {codes.size}")
    ranked = np.where(np.isnan(s), -math.inf, s)
    pairs: list[tuple[int, int]] = []
    for g in range(uniq.size):
        idx = np.flatnonzero(codes == g)
        kept = [int(i) for i in idx if w[i] > 0]
        dropped = [int(i) for i in idx if not w[i] > 0]
        if not kept or not dropped:
            continue
        chosen = sorted(kept, key=lambda i: (-ranked[i], i))
        rejected = sorted(dropped, key=lambda i: (ranked[i], i))
        order = [(c, rejected[(i + d) % len(rejected)]) for d in range(len(rejected)) for i, c in enumerate(chosen)]
        ok = [(c, r) for c, r in order if ranked[c] > ranked[r] and (texts is None or texts[c] != texts[r])]
        pairs += ok[:max_pairs]
    return pairs
