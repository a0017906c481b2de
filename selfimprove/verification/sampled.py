"""Shared driver of the sampled verifiers (CoT-Binary, CoT-Score): k verifications per candidate."""

from __future__ import annotations

from collections.abc import Sequence

from selfimprove.pipelines.spec import VerificationSpec
from selfimprove.resources.engine import Engine
from selfimprove.verification.base import Candidate, Row, row
from selfimprove.verification.prompts import PromptBook


def verify_sampled(
    method: str, engine: Engine, cands: Sequence[Candidate], spec: VerificationSpec, seed: int, book: PromptBook
) -> list[Row]:
    prompts = [book.prompt(method, c) for c in cands]
    gens = engine.generate(prompts, spec.k, spec.sampling(), seed)
    return [
        row(cands[g.prompt_index], method, g.sample_index, prompts[g.prompt_index], g.text, book.parse(method, g.text))
        for g in gens
    ]
