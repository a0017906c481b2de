"""Tournament: pairwise single elimination among each prompt's samples, for a set number of rounds.

Every match is a verification row of both players (verification_index = tournament round, score 1
for the winner and 0 for the loser, raw = the judge's text); a bye scores 1. A sample's folded
score is rounds won / rounds played, so it grows with how far the sample got. An unparseable match
is advanced by player A and recorded as not ok for both players.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from selfimprove.verification.base import Candidate, Row, Verifier, register, row
from selfimprove.verification.prompts import PromptBook

if TYPE_CHECKING:
    from selfimprove.resources.engine import Engine
    from selfimprove.spec import VerificationSpec


def verify(
    engine: Engine, cands: Sequence[Candidate], spec: VerificationSpec, seed: int, book: PromptBook
) -> list[Row]:
    by_prompt: dict[str, list[Candidate]] = defaultdict(list)
    for c in cands:
        by_prompt[c.prompt_id].append(c)
    alive = {}
    for pid, group in by_prompt.items():
        group = sorted(group, key=lambda c: c.sample_id)
        random.Random(f"{seed}|{pid}").shuffle(group)
        alive[pid] = group
    out: list[Row] = []
    for rnd in range(spec.tournament_rounds):
        matches: list[tuple[str, Candidate, Candidate]] = []
        for pid, group in alive.items():
            if len(group) % 2:
                out.append(row(group[-1], "tournament", rnd, "", "bye", 1.0))
            matches += [(pid, group[i], group[i + 1]) for i in range(0, len(group) - 1, 2)]
        if not matches:
            break
        prompts = [book.prompt("tournament", a, b) for _, a, b in matches]
        gens = engine.generate(prompts, 1, spec.sampling(), seed + rnd)
        winners: dict[str, list[Candidate]] = defaultdict(list)
        for (pid, a, b), prompt, g in zip(matches, prompts, gens, strict=True):
            verdict = book.parse("tournament", g.text)
            ok = verdict is not None
            a_wins = verdict != 1.0
            out.append(row(a, "tournament", rnd, prompt, g.text, float(a_wins) if ok else None))
            out.append(row(b, "tournament", rnd, prompt, g.text, float(not a_wins) if ok else None))
            winners[pid].append(a if a_wins else b)
        for pid, group in alive.items():
            if len(group) % 2:
                winners[pid].append(group[-1])
        alive = dict(winners)
    return out


VERIFIER = register(Verifier("tournament", verify, per_prompt=True, settings=("tournament_rounds",)))
