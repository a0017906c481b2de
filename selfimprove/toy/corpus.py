"""The deterministic pretraining corpus: solved problems plus checks in all four verification formats.

Problems come from the task's *train* split only. Candidates shown to the checks are correct, or
carry one realistic slip (a single wrong digit somewhere in the written division, with every later
value recomputed from it, see `formats.solution`: the kind of mistake sampling makes), or are random
numbers of the right length.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from selfimprove.tasks.arithmetic import ArithmeticTask
from selfimprove.tasks.base import Problem
from selfimprove.toy import formats

# document kind -> share of the corpus
MIX: dict[str, float] = {"gen": 0.38, "cot_binary": 0.34, "cot_score": 0.10, "mc": 0.06, "tournament": 0.12}
P_CORRECT = 0.40  # share of correct candidates in check documents
P_RANDOM = 0.30  # share of random same-length candidates: several wrong digits each, so marks see both kinds
P_NO_ANSWER = 0.02  # share of "x=?" candidates


def slipped_answer(p: Problem, rng: random.Random) -> str:
    """The final answer of the solution with one random slip (may equal the true answer)."""
    a, b, c = p.meta["a"], p.meta["b"], p.meta["c"]
    pos = rng.randrange(formats.solution_digits(a, b, c))
    text = formats.solution(a, b, c, slip=(pos, rng.randrange(10)))
    return formats.extract_answer(text) or formats.NO_ANSWER


def candidate(p: Problem, rng: random.Random) -> str | None:
    """A candidate answer: correct, slipped, random of the same length, or missing."""
    u = rng.random()
    if u < P_NO_ANSWER:
        return None
    if u < P_NO_ANSWER + P_CORRECT:
        return p.reference
    for _ in range(20):
        if u < P_NO_ANSWER + P_CORRECT + P_RANDOM:
            n = len(p.reference)
            ans = str(rng.randint(10 ** (n - 1) if n > 1 else 0, 10**n - 1))
        else:
            ans = slipped_answer(p, rng)
        if ans != p.reference:
            return ans
    return str(int(p.reference) + 1)


def document(kind: str, p: Problem, rng: random.Random) -> str:
    """One corpus document (prompt + target) of the given kind."""
    q = p.question
    if kind == "gen":
        return formats.generation_prompt(q) + formats.solution(p.meta["a"], p.meta["b"], p.meta["c"])
    if kind == "tournament":
        ca, cb = candidate(p, rng), candidate(p, rng)
        return formats.tournament_prompt(q, ca, cb) + formats.tournament_target(q, ca, cb)
    cand = candidate(p, rng)
    if kind == "mc":
        return formats.mc_prompt(q, cand) + formats.mc_target(q, cand)
    if kind == "cot_binary":
        return formats.cot_binary_prompt(q, cand) + formats.cot_binary_target(q, cand)
    if kind == "cot_score":
        return formats.cot_score_prompt(q, cand) + formats.cot_score_target(q, cand)
    raise ValueError(f"unknown document kind {kind!r}")


def documents(seed: int = 0, task: ArithmeticTask | None = None) -> Iterator[str]:
    """An endless deterministic stream of documents for `seed`."""
    task = task or ArithmeticTask()
    rng = random.Random(f"corpus/{seed}")
    kinds, weights = list(MIX), list(MIX.values())
    for p in task.stream(seed, "train"):
        yield document(rng.choices(kinds, weights)[0], p, rng)
