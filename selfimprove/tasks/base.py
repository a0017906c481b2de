"""The Task contract shared by the embedded task and the real benchmarks."""

from __future__ import annotations

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
