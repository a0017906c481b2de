"""CoT-Score: k written checks, each ending in a 1-10 score; the score is the mean scaled to [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence

from selfimprove.pipelines.spec import VerificationSpec
from selfimprove.resources.engine import Engine
from selfimprove.toy import formats
from selfimprove.verification.base import Candidate, Row
from selfimprove.verification.sampled import verify_sampled


def _scaled(text: str) -> float | None:
    v = formats.parse_cot_score(text)
    return None if v is None else (v - 1) / 9


def verify(engine: Engine, cands: Sequence[Candidate], spec: VerificationSpec, seed: int) -> list[Row]:
    return verify_sampled(
        "cot_score",
        engine,
        cands,
        spec,
        seed,
        build=lambda c: formats.cot_score_prompt(c.question, c.answer),
        parse=_scaled,
    )
