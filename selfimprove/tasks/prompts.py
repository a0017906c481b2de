"""Few-shot and chat-template generation prompts, and the base class the benchmarks share."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from selfimprove.tasks.base import Problem
from selfimprove.tasks.data import Split, normalize_split, seeded_sample, stable_hash

STYLES: tuple[str, ...] = ("fewshot", "chat")


def load_tokenizer(tokenizer: Any) -> Any:
    """A tokenizer object as is; a name or path through `AutoTokenizer` (imported lazily)."""
    if isinstance(tokenizer, str):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(tokenizer)
    return tokenizer


def fewshot_text(
    instruction: str,
    shots: Sequence[tuple[str, str]],
    question: str,
    q_prefix: str,
    a_prefix: str,
    a_sep: str = " ",
) -> str:
    """`instruction`, then `q_prefix question / a_prefix answer` blocks, ending with an open `a_prefix`."""
    blocks = [instruction.strip()] if instruction.strip() else []
    blocks += [f"{q_prefix}{q}\n{a_prefix}{a_sep}{a}" for q, a in shots]
    blocks.append(f"{q_prefix}{question}\n{a_prefix}")
    return "\n\n".join(blocks)


def chat_text(tokenizer: Any, instruction: str, shots: Sequence[tuple[str, str]], question: str) -> str:
    """The tokenizer's chat template over shot turns and the question, with the generation prompt."""
    head = f"{instruction.strip()}\n\n" if instruction.strip() else ""
    messages: list[dict[str, str]] = []
    for q, a in shots:
        messages += [{"role": "user", "content": head + q}, {"role": "assistant", "content": a}]
    messages.append({"role": "user", "content": head + question})
    out = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not isinstance(out, str):
        raise TypeError(f"apply_chat_template returned {type(out).__name__}, expected str")
    return out


class FewShotTask:
    """Shared machinery: cached split sides, seeded loading, shots from the train side, both prompt styles.

    Subclasses set `name`, `kind`, `instruction`, `q_prefix`, `a_prefix` and implement `_read_side`,
    `shot_answer` and (optionally) `shot_ok` and `question_text`.
    """

    name: str = ""
    kind: str = ""
    instruction: str = ""
    chat_instruction: str = ""
    q_prefix: str = "Question: "
    a_prefix: str = "Answer:"
    a_sep: str = " "  # between `a_prefix` and a shot's answer

    def __init__(self, *, shots: int = 4, style: str = "fewshot", tokenizer: Any = None, shot_seed: int = 0) -> None:
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        if shots < 0:
            raise ValueError(f"shots must be >= 0, got {shots}")
        self.shots = shots
        self.style = style
        self.shot_seed = shot_seed
        self._tokenizer = tokenizer
        self._sides: dict[Split, list[Problem]] = {}
        self._shot_pool: list[Problem] | None = None
        self._lock = threading.RLock()

    # -- data -----------------------------------------------------------------------------------
    def _read_side(self, side: Split) -> list[Problem]:
        raise NotImplementedError

    def problems(self, split: str = "train") -> list[Problem]:
        """Every problem of a split, in file order (cached)."""
        side = normalize_split(split)
        with self._lock:
            if side not in self._sides:
                self._sides[side] = self._read_side(side)
            return self._sides[side]

    def load(self, n: int, seed: int, split: str = "train") -> list[Problem]:
        """`n` problems of `split` ('train' or 'eval'), in a seeded order; sides never share a prompt."""
        return seeded_sample(self.problems(split), n, seed)

    # -- prompts --------------------------------------------------------------------------------
    def shot_ok(self, problem: Problem) -> bool:
        """Whether a train-side problem may serve as a shot (e.g. not too long)."""
        return True

    def shot_answer(self, problem: Problem) -> str:
        """The worked answer a shot shows."""
        raise NotImplementedError

    def question_text(self, problem: Problem) -> str:
        return problem.question.strip()

    def shot_problems(self, problem: Problem | None = None) -> list[Problem]:
        """The fixed, seeded shots from the train side, skipping `problem` itself."""
        if self.shots == 0:
            return []
        with self._lock:
            if self._shot_pool is None:
                pool = [p for p in self.problems("train") if self.shot_ok(p)]
                pool.sort(key=lambda p: stable_hash("shot", self.shot_seed, p.prompt_id))
                self._shot_pool = pool[: self.shots + 1]
            pool = self._shot_pool
        skip = problem.prompt_id if problem is not None else None
        return [p for p in pool if p.prompt_id != skip][: self.shots]

    @property
    def tokenizer(self) -> Any:
        with self._lock:
            if self._tokenizer is None:
                raise ValueError(f"{self.name}: style 'chat' needs a tokenizer (object or name)")
            self._tokenizer = load_tokenizer(self._tokenizer)
            return self._tokenizer

    @property
    def stop(self) -> tuple[str, ...]:
        """Stop strings for the engine: a base model otherwise writes the next few-shot question."""
        return (f"\n\n{self.q_prefix.strip()}",) if self.style == "fewshot" else ()

    def generation_prompt(self, problem: Problem) -> str:
        shots = [(self.question_text(s), self.shot_answer(s)) for s in self.shot_problems(problem)]
        if self.style == "chat":
            return chat_text(
                self.tokenizer, self.chat_instruction or self.instruction, shots, self.question_text(problem)
            )
        return fewshot_text(
            self.instruction, shots, self.question_text(problem), self.q_prefix, self.a_prefix, self.a_sep
        )

    # -- grading defaults -----------------------------------------------------------------------
    def grade(self, problem: Problem, completion: str) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def grade_many(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[bool]:
        """Grade aligned lists of problems and completions."""
        if len(problems) != len(completions):
            raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
        return [self.grade(p, c) for p, c in zip(problems, completions, strict=True)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, shots={self.shots}, style={self.style!r})"
