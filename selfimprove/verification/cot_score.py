"""CoT-Score: k written checks, each ending in a 1-10 score; the score is the mean scaled to [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from selfimprove.verification.base import Candidate, Row, Verifier, register
from selfimprove.verification.prompts import PromptBook
from selfimprove.verification.sampled import verify_sampled

if TYPE_CHECKING:
    from selfimprove.resources.engine import Engine
    from selfimprove.spec import VerificationSpec


def verify(
    engine: Engine, cands: Sequence[Candidate], spec: VerificationSpec, seed: int, book: PromptBook
) -> list[Row]:
    return verify_sampled("cot_score", engine, cands, spec, seed, book)


VERIFIER = register(Verifier("cot_score", verify, repeated=True, written=True))
