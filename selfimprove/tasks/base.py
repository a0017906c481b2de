"""The Task contract shared by the embedded task and the real benchmarks."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class TaskDataError(ValueError):
    """A dataset row that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Problem:
    """One prompt of a task.

    `prompt_id` is stable across runs (derived from the source row, never from list order),
    `question` is the raw problem text, `reference` the reference final answer as a string.
    """

    prompt_id: str
    question: str
    reference: str
    meta: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Task(Protocol):
    """A task: loads problems, builds generation prompts, extracts and grades answers."""

    name: str

    def load(self, n: int, seed: int, split: str = "train") -> list[Problem]:
        """Return `n` problems of `split`, deterministically for `seed`."""
        ...

    def generation_prompt(self, problem: Problem) -> str:
        """The exact text the model continues."""
        ...

    def extract_answer(self, completion: str) -> str | None:
        """The final answer in a completion, or None if there is none."""
        ...

    def grade(self, problem: Problem, completion: str) -> bool:
        """True utility: whether the completion's final answer is correct."""
        ...


@runtime_checkable
class BenchmarkTask(Task, Protocol):
    """Optional extras of the real benchmarks; code holding a plain Task uses the helpers below."""

    kind: str  # "math" | "qa" | "sudoku" | "custom"

    @property
    def stop(self) -> tuple[str, ...]:
        """Stop strings for the engine, for the task's prompt style."""
        ...

    def grade_many(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[bool]:
        """`grade` over aligned lists, batched (MATH grades in a process pool)."""
        ...


def grade_many(task: Task, problems: Sequence[Problem], completions: Sequence[str]) -> list[bool]:
    """Batch grading through the task's `grade_many` when it has one, else `grade` per item."""
    batch = getattr(task, "grade_many", None)
    if callable(batch):
        return list(batch(problems, completions))
    if len(problems) != len(completions):
        raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
    return [task.grade(p, c) for p, c in zip(problems, completions, strict=True)]


GRADING_VERSION = "1"  # raise when a shared extraction or grading rule changes; a task may set `grader_version`


def grading_key(task: Task, problem: Problem) -> str:
    """What a row's `answer` and `correct` depend on besides the completion: the task's grading rule (its
    class, `grader_version` and optional `grading_config()`) and the reference answers. A cached row
    whose key differs is graded again (cheap); its completion is reused."""
    config = getattr(task, "grading_config", None)
    parts = [
        type(task).__qualname__,
        GRADING_VERSION,
        str(getattr(task, "grader_version", "")),
        config() if callable(config) else "",
        problem.reference,
        problem.meta.get("answers"),
    ]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]


def same_answers(task: Task) -> Callable[[Sequence[tuple[str, str]]], list[bool]]:
    """The task's answer equivalence over pairs of extracted answers (majority vote groups by it).

    A task may define `same_answers(pairs)` (MATH: math-verify; GSM8K: numeric value; NQ: SQuAD
    normalisation); otherwise two answers are the same when their stripped strings are equal.
    """
    fn = getattr(task, "same_answers", None)
    if callable(fn):
        return lambda pairs: [bool(x) for x in fn(pairs)]
    return lambda pairs: [a.strip() == b.strip() for a, b in pairs]
