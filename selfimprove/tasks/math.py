"""MATH (the MATH500 subset): the last `\\boxed{}` answer, equivalence decided by math-verify.

math-verify runs in worker processes with a hard per-item time limit (see `timeouts.py`); an item
that runs out of time grades incorrect and is counted in `MathTask.timeouts`.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfimprove.tasks.base import Problem, TaskDataError
from selfimprove.tasks.data import (
    Split,
    check_fraction,
    datasets_dir,
    dedupe,
    hash_side,
    read_rows,
    require_str,
    stable_id,
)
from selfimprove.tasks.prompts import FewShotTask
from selfimprove.tasks.timeouts import Outcome, TimeoutPool

_BOXED = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_NEXT_SHOT = re.compile(r"\n\s*(?:Problem|Question)\s*(?:\d+\s*)?:", re.IGNORECASE)
_ANCHOR = re.compile(
    r"(?:final\s+answer|answer)(?:\s+is)?\s*(?:\*\*)?\s*[:=]\s*(?:\*\*)?|(?:final\s+answer|answer)\s+is\b:?",
    re.IGNORECASE,
)
_DELIMS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))


def _braced(text: str, start: int) -> str | None:
    """The content of the `{...}` group opening at `text[start]`, braces nested; None if unbalanced."""
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """The content of the last complete `\\boxed{...}` or `\\fbox{...}` (also `\\boxed 5`)."""
    for m in reversed(list(_BOXED.finditer(text))):
        j = m.end()
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            content = _braced(text, j)
        else:
            token = re.match(r"[^\s$.,]+", text[j:])
            content = token.group(0) if token and j > m.end() else None
        if content is not None and content.strip():
            return content.strip()
    return None


def _anchored_answer(text: str) -> str | None:
    """The math after the last 'answer is' / 'Answer:' anchor: `$...$`, `\\(...\\)`, else that sentence."""
    for anchor in reversed(list(_ANCHOR.finditer(text))):
        rest = text[anchor.end() :].lstrip(" *")
        for left, right in _DELIMS:
            if rest.startswith(left):
                end = rest.find(right, len(left))
                if end > len(left):
                    return rest[len(left) : end].strip()
        line = rest.split("\n", 1)[0]
        line = re.split(r"\.(?:\s|$)|\. I hope", line, maxsplit=1)[0].strip().rstrip(".").strip("* ")
        if line:
            return line
    return None


def extract_math_answer(completion: str) -> str | None:
    """The last boxed answer; in a text without `\\boxed`, the answer after the last 'answer is' / 'Answer:'.

    An empty or unclosed (truncated) box gives None.
    """
    text = completion
    nxt = _NEXT_SHOT.search(text)
    if nxt and nxt.start() > 0:
        text = text[: nxt.start()]
    if _BOXED.search(text):
        return last_boxed(text)
    return _anchored_answer(text)


# -- math-verify, run in worker processes -----------------------------------------------------------


def _init_worker() -> None:
    """Import math-verify and warm its parser before a worker's clock starts."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    _parsed("1")


@functools.lru_cache(maxsize=8192)
def _parsed(latex: str) -> list[Any]:
    from math_verify import parse

    return parse(f"\\boxed{{{latex}}}", parsing_timeout=None)  # type: ignore[arg-type]


def verify_pair(item: tuple[str, str]) -> bool:
    """math-verify equivalence of (gold, answer) LaTeX strings, with no time limit of its own."""
    from math_verify import verify

    gold, answer = item
    return bool(verify(_parsed(gold), _parsed(answer), timeout_seconds=None))


_POOLS: dict[tuple[int, float], TimeoutPool] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(workers: int, timeout_s: float) -> TimeoutPool:
    """One math-verify pool per (workers, timeout) in this process, started lazily."""
    if importlib.util.find_spec("math_verify") is None:
        raise ImportError("MATH grading needs math-verify: pip install 'math-verify>=0.9'")
    with _POOLS_LOCK:
        key = (workers, timeout_s)
        if key not in _POOLS:
            _POOLS[key] = TimeoutPool(verify_pair, workers=workers, timeout_s=timeout_s, init=_init_worker)
        return _POOLS[key]


def verify_many(pairs: Sequence[tuple[str, str | None]], *, workers: int = 2, timeout_s: float = 5.0) -> list[Outcome]:
    """Outcomes of math-verify on (gold, answer) pairs; a None answer is simply False.

    `workers=0` runs in this process without a time limit (debugging; not thread-safe for timeouts).
    """
    todo = [(i, (g, a)) for i, (g, a) in enumerate(pairs) if a is not None and a.strip()]
    out = [Outcome(value=False)] * len(pairs)
    if workers == 0:
        logging.getLogger("math_verify").setLevel(logging.ERROR)
        for i, item in todo:
            try:
                out[i] = Outcome(value=verify_pair(item))
            except Exception as e:  # pragma: no cover - math-verify catches its own errors
                out[i] = Outcome(error=repr(e))
        return out
    results = shared_pool(workers, timeout_s).map([item for _, item in todo])
    for (i, _), res in zip(todo, results, strict=True):
        out[i] = res
    return out


class MathTask(FewShotTask):
    """MATH500 (or any file in its format); one file split into 'train' and 'eval' by a seeded hash."""

    name = "math500"
    kind = "math"
    instruction = "Solve the following math problems. Put the final answer in \\boxed{}."
    chat_instruction = "Solve the math problem step by step. Put the final answer in \\boxed{}."
    q_prefix = "Problem: "
    a_prefix = "Solution:"

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        eval_fraction: float = 0.5,
        split_seed: int = 0,
        shots: int = 4,
        style: str = "fewshot",
        tokenizer: Any = None,
        shot_seed: int = 0,
        max_shot_chars: int = 700,
        workers: int = 2,
        timeout_s: float = 5.0,
    ) -> None:
        super().__init__(shots=shots, style=style, tokenizer=tokenizer, shot_seed=shot_seed)
        self.path = path or datasets_dir() / "math500" / "test.jsonl"
        self.eval_fraction, self.split_seed = check_fraction(eval_fraction), split_seed
        self.max_shot_chars, self.workers, self.timeout_s = max_shot_chars, workers, timeout_s
        self.timeouts = 0
        self.errors = 0

    def _read_all(self) -> list[Problem]:
        problems = []
        for where, row in read_rows(self.path):
            question = require_str(row, "problem", where)
            solution = row.get("solution") if isinstance(row.get("solution"), str) else ""
            answer = row.get("answer")
            if answer is None and solution:
                answer = last_boxed(solution)
            if not isinstance(answer, str) or not answer.strip():
                raise TaskDataError(f"{where}: unparseable reference answer {answer!r} (no 'answer' or boxed)")
            meta = {"solution": solution, "source": where}
            meta.update({k: row[k] for k in ("subject", "level", "unique_id") if k in row})
            problems.append(Problem(stable_id("math", question), question.strip(), answer.strip(), meta=meta))
        return dedupe(problems)

    def _read_side(self, side: Split) -> list[Problem]:
        return hash_side(self._read_all(), side, self.split_seed, self.eval_fraction)

    def shot_ok(self, problem: Problem) -> bool:
        sol = problem.meta.get("solution", "")
        return bool(sol) and len(sol) <= self.max_shot_chars and "[asy]" not in problem.question + sol

    def shot_answer(self, problem: Problem) -> str:
        return str(problem.meta["solution"]).strip()

    @property
    def stop(self) -> tuple[str, ...]:
        return ("\n\nProblem:",) if self.style == "fewshot" else ()

    def extract_answer(self, completion: str) -> str | None:
        return extract_math_answer(completion)

    def grade_outcomes(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Outcome]:
        """Per-item outcomes (value: correct?), counting timeouts and errors on the task."""
        if len(problems) != len(completions):
            raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
        pairs = [(p.reference, self.extract_answer(c)) for p, c in zip(problems, completions, strict=True)]
        outs = verify_many(pairs, workers=self.workers, timeout_s=self.timeout_s)
        self.timeouts += sum(o.timed_out for o in outs)
        self.errors += sum(o.error is not None for o in outs)
        return outs

    def grade_many(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[bool]:
        """Batch grading through the math-verify process pool; timeouts and errors grade False."""
        return [o.ok and bool(o.value) for o in self.grade_outcomes(problems, completions)]

    def grade(self, problem: Problem, completion: str) -> bool:
        return self.grade_many([problem], [completion])[0]

    def same_answers(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """math-verify equivalence of answer pairs (`10{,}000` and `10000`); timeouts and errors: different."""
        outs = verify_many(list(pairs), workers=self.workers, timeout_s=self.timeout_s)
        return [o.ok and bool(o.value) for o in outs]
