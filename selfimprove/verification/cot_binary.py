"""CoT-Binary: k written checks, each ending in a verdict parsed to 1 or 0; the score is the mean."""

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
    return verify_sampled("cot_binary", engine, cands, spec, seed, book)


VERIFIER = register(Verifier("cot_binary", verify, repeated=True, written=True))
