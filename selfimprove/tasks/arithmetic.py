"""The embedded synthetic task: find x in `x*a+b=c`, solved by written long division.

The embedded model checks a candidate by re-solving greedily and marking each of the candidate's digits
against its own quotient digits (`selfimprove.toy.formats`): a greedy re-solve is more accurate than a
sample, so the check catches the slips that sampling introduced. Problems are
drawn from a seeded RNG; a problem's split is decided by a hash of its text, so train and eval never
share a problem and the pretraining corpus (train split only) never sees an eval problem.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

from selfimprove.tasks.base import Problem
from selfimprove.toy import formats

SPLITS = ("train", "eval")


def _digest(q: str) -> bytes:
    return hashlib.sha256(q.encode()).digest()


def split_of(q: str, eval_fraction: float = 0.125) -> str:
    """The split a question belongs to, from a hash of its text."""
    return "eval" if int.from_bytes(_digest(q)[:4], "little") < eval_fraction * 2**32 else "train"


def prompt_id(q: str) -> str:
    return "arith-" + _digest(q).hex()[:16]


@dataclass(frozen=True)
class ArithmeticTask:
    """Difficulty knobs: digits of x, range of the multiplier a, largest offset b (always b < a)."""

    min_digits: int = 1
    max_digits: int = 3
    min_a: int = 2
    max_a: int = 9
    max_b: int = 9
    eval_fraction: float = 0.125
    name: str = "arithmetic"

    def __post_init__(self) -> None:
        if not (1 <= self.min_digits <= self.max_digits and 2 <= self.min_a <= self.max_a <= 9):
            raise ValueError(f"bad difficulty knobs: {self}")
        if not 0 <= self.max_b <= 9:
            raise ValueError(f"max_b must be in 0..9, got {self.max_b}")

    def draw(self, rng: random.Random) -> tuple[int, int, int]:
        """One random (x, a, b)."""
        d = rng.randint(self.min_digits, self.max_digits)
        x = rng.randint(10 ** (d - 1), 10**d - 1)
        a = rng.randint(self.min_a, self.max_a)
        return x, a, rng.randint(0, min(self.max_b, a - 1))

    def stream(self, seed: int, split: str = "train") -> Iterator[Problem]:
        """An endless deterministic stream of problems of `split` (repeats possible)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        rng = random.Random(f"arithmetic/{seed}")
        while True:
            x, a, b = self.draw(rng)
            q = formats.question(a, b, x * a + b)
            if split_of(q, self.eval_fraction) == split:
                yield Problem(prompt_id(q), q, str(x), {"x": x, "a": a, "b": b, "c": x * a + b})

    def load(self, n: int, seed: int, split: str = "train") -> list[Problem]:
        """`n` distinct problems of `split`, deterministically for `seed`."""
        out: dict[str, Problem] = {}
        for p in self.stream(seed, split):
            if len(out) >= n:
                break
            out.setdefault(p.prompt_id, p)
        return list(out.values())

    def generation_prompt(self, problem: Problem) -> str:
        return formats.generation_prompt(problem.question)

    def extract_answer(self, completion: str) -> str | None:
        return formats.extract_answer(completion)

    def grade(self, problem: Problem, completion: str) -> bool:
        answer = self.extract_answer(completion)
        return answer is not None and answer == str(int(problem.reference))
