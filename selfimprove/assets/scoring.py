"""From verification rows to per-sample scores and filter weights (shared by filtered, gap, sweeps, pairs)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from numpy.typing import ArrayLike

from selfimprove import filters, metrics, voting
from selfimprove.spec import FilterSpec
from selfimprove.tasks.base import Task, same_answers
from selfimprove.verification import sample_scores

ENSEMBLE = "ensemble"
MAJORITY = "majority"  # the verifier-free candidate: each sample scored by its answer's vote share


def prompt_codes(generations: pa.Table) -> np.ndarray:
    """Each sample's prompt as an integer code (first-appearance order, as `metrics.factorize` numbers them):
    grouping by codes gives the same groups in the same order as by prompt ids, without sorting strings again
    in every filter and bootstrap."""
    return metrics.factorize(generations.column("prompt_id").to_pylist())[0]


def answer_classes(task: Task, generations: pa.Table) -> np.ndarray:
    """Per-sample answer class within its prompt, under the task's answer equivalence (-1: no answer)."""
    answers = generations.column("answer").to_pylist()
    return voting.answer_classes(prompt_codes(generations), answers, same_answers(task))


def method_scores(
    generations: pa.Table, verifications: pa.Table, methods: list[str], policy: str
) -> dict[str, np.ndarray]:
    """One score array per method, aligned with the generations table."""
    ids = generations.column("sample_id").to_pylist()
    rows = verifications.select(["sample_id", "method", "ok", "score"]).to_pylist()
    return {m: np.asarray(sample_scores(rows, ids, m, policy), dtype=float) for m in methods}


def parse_failure_rates(verifications: pa.Table) -> dict[str, float]:
    """Per method with rows, the fraction of its verification rows whose output did not parse (`ok` false)."""
    counts = verifications.select(["method", "ok"]).group_by("method").aggregate([("ok", "count"), ("ok", "sum")])
    return {
        m: 1.0 - ok / n
        for m, n, ok in zip(*(counts.column(c).to_pylist() for c in ("method", "ok_count", "ok_sum")), strict=True)
    }


def filter_weights(prompt_ids: ArrayLike, scores: np.ndarray, f: FilterSpec) -> np.ndarray:
    kind = filters.FILTERS[f.kind]
    if kind.needs != "scores":
        raise ValueError(f"filter kind {f.kind!r} does not filter verifier scores")
    return kind.apply(prompt_ids, scores, getattr(f, kind.param) if kind.param else None, f.ties)


def combined(
    prompt_ids: ArrayLike, scores: dict[str, np.ndarray], f: FilterSpec, classes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(score, weight) of the methods together: one method as is, several through the ensemble.

    The `majority` filter ignores the verifiers: its score is the vote share of each sample's answer class
    (`classes`, from `answer_classes`) and it keeps the prompt's most frequent answer.
    """
    kind = filters.FILTERS[f.kind]
    if kind.needs == "answers":
        if classes is None:
            raise ValueError(f"the {f.kind} filter needs the samples' answer classes")
        share = voting.vote_share(prompt_ids, classes)
        return share, kind.apply(prompt_ids, share, None, f.ties)
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


def selection(
    generations: pa.Table,
    verifications: pa.Table,
    methods: list[str],
    f: FilterSpec,
    policy: str,
    classes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(score, weight) per sample of what the filter keeps for training, empty-prompt policy applied."""
    prompt_ids = prompt_codes(generations)
    score, weight = combined(prompt_ids, method_scores(generations, verifications, methods, policy), f, classes)
    return score, filters.apply_empty_policy(prompt_ids, score, weight, f.empty)


def rule(f: FilterSpec, methods: list[str]) -> str:
    """A readable description of a selection rule, recorded with every kept sample."""
    kind = filters.FILTERS[f.kind]
    if kind.param is None:
        return f"{f.kind}(answers)"
    ties = f", ties={f.ties}" if kind.uses_ties else ""
    joined = f" {f.ensemble.upper()} ".join(methods) if len(methods) > 1 else methods[0]
    return f"{joined}: {f.kind}({kind.param}={getattr(f, kind.param)}{ties})"
