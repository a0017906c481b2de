"""The verifier registry, the candidate type and the fold from verification rows to sample scores."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from selfimprove.resources.engine import Engine
from selfimprove.spec import VerificationSpec


@dataclass(frozen=True)
class Candidate:
    """A generated sample to verify."""

    sample_id: str
    prompt_id: str
    question: str
    completion: str
    answer: str | None
    correct: bool


Row = dict[str, Any]
Method = Callable[[Engine, Sequence[Candidate], VerificationSpec, int, Any], list[Row]]

NEUTRAL = 0.5


def row(cand: Candidate, method: str, index: int, prompt: str, raw: str, score: float | None) -> Row:
    """One verification row; `score=None` marks unparseable output (ok=False, score NaN)."""
    return {
        "sample_id": cand.sample_id,
        "prompt_id": cand.prompt_id,
        "method": method,
        "verification_index": index,
        "verifier_prompt": prompt,
        "raw": raw,
        "ok": score is not None,
        "score": math.nan if score is None else float(score),
    }


def _methods() -> dict[str, Method]:
    from selfimprove.verification import cot_binary, cot_score, mc, oracle, tournament

    return {
        "mc": mc.verify,
        "cot_binary": cot_binary.verify,
        "cot_score": cot_score.verify,
        "tournament": tournament.verify,
        "oracle": oracle.verify,
    }


METHODS = ("mc", "cot_binary", "cot_score", "tournament", "oracle")


def verify(
    method: str, engine: Engine, cands: Sequence[Candidate], spec: VerificationSpec, seed: int, kind: str = "math"
) -> list[Row]:
    """Verification rows of `method` for the candidates; `kind` is the task kind for natural-language prompts."""
    from selfimprove.verification.prompts import prompt_book

    book = prompt_book(spec.style, kind, getattr(engine, "tokenizer", None), spec.templates)
    return _methods()[method](engine, cands, spec, seed, book)


def sample_scores(rows: Sequence[Row], sample_ids: Sequence[str], method: str, policy: str) -> list[float]:
    """One score per sample for `method`: the mean over parsed verifications.

    A sample with no parsed verification gets NaN (policy "drop": never kept), 0 ("zero") or 0.5
    ("neutral").
    """
    parsed: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r["method"] == method and r["ok"]:
            parsed[r["sample_id"]].append(r["score"])
    fallback = {"drop": math.nan, "zero": 0.0, "neutral": NEUTRAL}[policy]
    return [sum(parsed[s]) / len(parsed[s]) if parsed.get(s) else fallback for s in sample_ids]
