"""Shared driver of the sampled verifiers (CoT-Binary, CoT-Score): k verifications per candidate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from selfimprove.resources.engine import Engine, generate_distinct
from selfimprove.verification.base import Candidate, Row, row
from selfimprove.verification.prompts import PromptBook

if TYPE_CHECKING:
    from selfimprove.spec import VerificationSpec


def verify_sampled(
    method: str, engine: Engine, cands: Sequence[Candidate], spec: VerificationSpec, seed: int, book: PromptBook
) -> list[Row]:
    """k checks per candidate; candidates with the same verifier prompt (the same answer to the same
    question) share one generation (`generate_distinct`)."""
    prompts = [book.prompt(method, c) for c in cands]
    gens = generate_distinct(engine, prompts, spec.k, spec.sampling(), seed)
    return [
        row(c, method, g.sample_index, p, g.text, book.parse(method, g.text))
        for c, p in zip(cands, prompts, strict=True)
        for g in gens[p]
    ]
