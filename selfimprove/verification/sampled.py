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
    """k checks per candidate. Candidates with the same verifier prompt (the same answer to the same
    question) share one generation: by the engine rule a sample depends only on the prompt, the sampling,
    the seed and its index, so the rows are the same as generating each one."""
    prompts = [book.prompt(method, c) for c in cands]
    unique = list(dict.fromkeys(prompts))
    by_prompt: dict[str, list[tuple[int, str]]] = {p: [] for p in unique}
    for g in engine.generate(unique, spec.k, spec.sampling(), seed):
        by_prompt[unique[g.prompt_index]].append((g.sample_index, g.text))
    return [
        row(c, method, i, p, text, book.parse(method, text))
        for c, p in zip(cands, prompts, strict=True)
        for i, text in sorted(by_prompt[p])
    ]
