"""MC: p(correct) / (p(correct) + p(incorrect)) from the two verdict continuations, one forward pass."""

from __future__ import annotations

import math
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
    prompts = [book.prompt("mc", c) for c in cands]
    n = len(prompts)
    yes_text, no_text = book.mc_verdicts
    logps = engine.score(prompts * 2, [yes_text] * n + [no_text] * n)
    out = []
    for i, (c, p) in enumerate(zip(cands, prompts, strict=True)):
        yes, no = sum(logps[i]), sum(logps[n + i])
        top = max(yes, no)
        p_yes = math.exp(yes - top) / (math.exp(yes - top) + math.exp(no - top))
        out.append(row(c, "mc", 0, p, f"logp_correct={yes:.4f} logp_incorrect={no:.4f}", p_yes))
    return out


VERIFIER = register(Verifier("mc", verify))
