"""Short arithmetic word problems, generated from a seed: the task a small pretrained model can do sometimes.

Each problem is one sentence pattern ("Mia has 23 pens and buys 15 more. How many pens does Mia have now?")
with one operation; the knobs choose the operations and the operand range, so the difficulty can be set
to where a model's sampling accuracy leaves room for a verifier. Problems are drawn once from a fixed
seeded pool; a problem's side (train/eval) comes from a hash of its text. Shots show a one-line worked
answer ending in "The answer is N."; the final number is extracted and graded as in GSM8K.
"""

from __future__ import annotations

import random
from typing import Any

from selfimprove.tasks.base import Problem
from selfimprove.tasks.data import Split, check_fraction, dedupe, hash_side, stable_id
from selfimprove.tasks.gsm8k import NumericAnswers
from selfimprove.tasks.prompts import FewShotTask

NAMES = ("Mia", "Tom", "Ana", "Ben", "Lea", "Sam", "Ivy", "Max", "Zoe", "Leo", "Eva", "Noah")
ITEMS = ("apples", "pens", "stickers", "marbles", "books", "cards", "shells", "coins", "eggs", "cookies")

# op -> (question pattern, worked answer pattern); {a} and {b} are the operands, {r} the result.
PATTERNS: dict[str, tuple[str, str]] = {
    "add": (
        "{name} has {a} {item} and buys {b} more. How many {item} does {name} have now?",
        "{name} has {a} + {b} = {r} {item}. The answer is {r}.",
    ),
    "sub": (
        "{name} has {a} {item} and gives {b} of them away. How many {item} does {name} have left?",
        "{name} has {a} - {b} = {r} {item} left. The answer is {r}.",
    ),
    "mul": (
        "{name} buys {a} bags with {b} {item} in each bag. How many {item} does {name} buy?",
        "{name} buys {a} * {b} = {r} {item}. The answer is {r}.",
    ),
}


class WordArithmeticTask(NumericAnswers, FewShotTask):
    """Seeded one-step word problems; `ops` from PATTERNS, operands in [lo, hi] (`mul`'s second in 2..9)."""

    name = "word_arithmetic"
    kind = "math"
    instruction = "Solve each problem. Finish with 'The answer is N.'"
    chat_instruction = "Solve the problem. Finish your response with 'The answer is N.' where N is the final number."

    def __init__(
        self,
        ops: tuple[str, ...] | list[str] = ("add", "sub"),
        lo: int = 10,
        hi: int = 99,
        pool: int = 2000,
        pool_seed: int = 0,
        eval_fraction: float = 0.5,
        *,
        shots: int = 4,
        style: str = "fewshot",
        tokenizer: Any = None,
        shot_seed: int = 0,
    ) -> None:
        super().__init__(shots=shots, style=style, tokenizer=tokenizer, shot_seed=shot_seed)
        unknown = set(ops) - set(PATTERNS)
        if not ops or unknown:
            raise ValueError(f"word_arithmetic: ops must be a non-empty subset of {sorted(PATTERNS)}, got {list(ops)}")
        if not 1 <= lo <= hi:
            raise ValueError(f"word_arithmetic: need 1 <= lo <= hi, got lo={lo} hi={hi}")
        self.ops, self.lo, self.hi = tuple(ops), lo, hi
        self.pool, self.pool_seed = pool, pool_seed
        self.eval_fraction = check_fraction(eval_fraction)

    def draw(self, rng: random.Random) -> Problem:
        op = rng.choice(self.ops)
        a, b = rng.randint(self.lo, self.hi), rng.randint(self.lo, self.hi)
        if op == "sub" and b > a:
            a, b = b, a
        if op == "mul":
            b = rng.randint(2, 9)
        r = {"add": a + b, "sub": a - b, "mul": a * b}[op]
        fill = {"name": rng.choice(NAMES), "item": rng.choice(ITEMS), "a": a, "b": b, "r": r}
        question, worked = (p.format(**fill) for p in PATTERNS[op])
        return Problem(stable_id(self.name, question), question, str(r), {"op": op, "solution": worked})

    def _read_side(self, side: Split) -> list[Problem]:
        rng = random.Random(f"{self.name}/{self.pool_seed}/{self.ops}/{self.lo}/{self.hi}")
        problems = dedupe([self.draw(rng) for _ in range(self.pool)])
        return hash_side(problems, side, self.pool_seed, self.eval_fraction)

    def shot_answer(self, problem: Problem) -> str:
        return str(problem.meta["solution"])
