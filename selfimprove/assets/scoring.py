"""From verification rows to per-sample scores and filter weights (shared by filtered and gap)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from selfimprove import filters
from selfimprove.spec import FilterSpec
from selfimprove.verification import sample_scores

ENSEMBLE = "ensemble"


def method_scores(
    generations: pa.Table, verifications: pa.Table, methods: list[str], policy: str
) -> dict[str, np.ndarray]:
    """One score array per method, aligned with the generations table."""
    ids = generations.column("sample_id").to_pylist()
    rows = verifications.select(["sample_id", "method", "ok", "score"]).to_pylist()
    return {m: np.asarray(sample_scores(rows, ids, m, policy), dtype=float) for m in methods}


def filter_weights(prompt_ids: list[str], scores: np.ndarray, f: FilterSpec) -> np.ndarray:
    kind = filters.FILTERS[f.kind]
    return kind.apply(prompt_ids, scores, getattr(f, kind.param))


def combined(prompt_ids: list[str], scores: dict[str, np.ndarray], f: FilterSpec) -> tuple[np.ndarray, np.ndarray]:
    """(score, weight) of the methods together: one method as is, several through the ensemble."""
    if len(scores) == 1:
        (s,) = scores.values()
        return s, filter_weights(prompt_ids, s, f)
    if f.ensemble == "and":
        masks = [filter_weights(prompt_ids, s, f) for s in scores.values()]
        return filters.mean_ensemble(list(scores.values())), filters.and_ensemble(masks)
    s = (
        filters.mean_ensemble(list(scores.values()))
        if f.ensemble == "mean"
        else filters.rank_average(prompt_ids, list(scores.values()))
    )
    return s, filter_weights(prompt_ids, s, f)


def rule(f: FilterSpec, methods: list[str]) -> str:
    """A readable description of a selection rule, recorded with every kept sample."""
    param = filters.FILTERS[f.kind].param
    joined = f" {f.ensemble.upper()} ".join(methods) if len(methods) > 1 else methods[0]
    return f"{joined}: {f.kind}({param}={getattr(f, param)})"
