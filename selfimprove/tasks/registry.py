"""`get_task`: a benchmark by name, a custom task from YAML, or either from a spec mapping."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from selfimprove.tasks.base import Task
from selfimprove.tasks.data import datasets_dir

__all__ = ["TASKS", "datasets_dir", "get_task", "task_names"]


def _gsm8k(**kw: Any) -> Task:
    from selfimprove.tasks.gsm8k import GSM8KTask

    return GSM8KTask(**kw)


def _math(**kw: Any) -> Task:
    from selfimprove.tasks.math import MathTask

    return MathTask(**kw)


def _nq(**kw: Any) -> Task:
    from selfimprove.tasks.nq import NQOpenTask

    return NQOpenTask(**kw)


def _sudoku(**kw: Any) -> Task:
    from selfimprove.tasks.sudoku import Sudoku4Task

    return Sudoku4Task(**kw)


def _arithmetic(**kw: Any) -> Task:
    from selfimprove.tasks.arithmetic import ArithmeticTask

    return ArithmeticTask(**kw)  # type: ignore[return-value]


def _word_arithmetic(**kw: Any) -> Task:
    from selfimprove.tasks.word_arithmetic import WordArithmeticTask

    return WordArithmeticTask(**kw)


def _custom(**kw: Any) -> Task:
    from selfimprove.tasks.custom import CustomTask

    spec = kw.pop("spec", None)
    if spec is not None:  # custom with spec=<path to YAML>
        return CustomTask.from_yaml(spec, **kw)
    tokenizer = kw.pop("tokenizer", None)
    return CustomTask(kw, tokenizer=tokenizer)


TASKS: dict[str, Callable[..., Task]] = {
    "gsm8k": _gsm8k,
    "math500": _math,
    "math": _math,
    "nq_open": _nq,
    "nq": _nq,
    "sudoku4": _sudoku,
    "sudoku": _sudoku,
    "arithmetic": _arithmetic,
    "word_arithmetic": _word_arithmetic,
    "custom": _custom,
}


def task_names() -> list[str]:
    return sorted(TASKS)


def get_task(name_or_spec: str | Path | Mapping[str, Any], **options: Any) -> Task:
    """A task from a registered name (`options` are its constructor keywords), a custom-task YAML path
    (`options` override its keys), or a mapping: `{"task": name, **options}` or a custom-task spec.
    """
    if isinstance(name_or_spec, Mapping):
        spec = dict(name_or_spec)
        if "task" in spec:
            return get_task(str(spec.pop("task")), **{**spec, **options})
        return TASKS["custom"](**{**spec, **options})
    text = str(name_or_spec)
    if text.startswith("custom:"):
        return TASKS["custom"](spec=text[len("custom:") :], **options)
    if text in TASKS:
        return TASKS[text](**options)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        return TASKS["custom"](spec=text, **options)
    raise ValueError(f"unknown task {text!r}: use one of {task_names()} or a custom-task YAML path")
