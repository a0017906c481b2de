"""Verifiers: each method builds prompts for a model to judge samples and parses its output.

A method turns candidates into verification rows (one per candidate x verification index) with the
raw text, a score in [0, 1] and an `ok` flag; `sample_scores` folds rows into one score per sample.
Each method is one module that registers a `Verifier` in `VERIFIERS`; importing this package imports
them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from selfimprove.verification import cot_binary, cot_score, mc, oracle, tournament  # noqa: F401  (registration)
from selfimprove.verification.base import VERIFIERS, Candidate, Row, Verifier, register, sample_scores
from selfimprove.verification.prompts import CHAT_STYLES, prompt_book

if TYPE_CHECKING:
    from selfimprove.resources.engine import Engine
    from selfimprove.spec import VerificationSpec

__all__ = ["VERIFIERS", "Candidate", "Row", "Verifier", "register", "sample_scores", "verify"]


def verify(
    method: str,
    engine: Engine | Any,
    cands: Sequence[Candidate],
    spec: VerificationSpec,
    seed: int,
    kind: str = "math",
) -> list[Row]:
    """Verification rows of `method` for the candidates; `kind` is the task kind for natural-language prompts.

    A method that needs no model (the oracle) never touches `engine`, which may then be None or a lazy
    engine that is never loaded.
    """
    verifier = VERIFIERS[method]
    if not verifier.needs_model:
        return verifier.verify(engine, cands, spec, seed, None)
    if engine is None:
        raise ValueError(f"verification method {method!r} needs an engine")
    # only the chat styles need the tokenizer: a lazy engine stays unloaded otherwise
    tokenizer = getattr(engine, "tokenizer", None) if spec.style in CHAT_STYLES else None
    book = prompt_book(spec.style, kind, tokenizer, spec.templates)
    return verifier.verify(engine, cands, spec, seed, book)
