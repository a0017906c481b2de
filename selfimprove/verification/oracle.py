"""Oracle: the grader's own label as the score (the paper's control and the upper bound)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from selfimprove.verification.base import Candidate, Row, Verifier, register, row

if TYPE_CHECKING:
    from selfimprove.resources.engine import Engine
    from selfimprove.spec import VerificationSpec


def verify(engine: Engine, cands: Sequence[Candidate], spec: VerificationSpec, seed: int, book: object) -> list[Row]:
    return [row(c, "oracle", 0, "", "grader", float(c.correct)) for c in cands]


VERIFIER = register(Verifier("oracle", verify, needs_model=False))
