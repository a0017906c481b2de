"""The verifier registry, the candidate and row types, and the fold from verification rows to sample scores."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
Method = Callable[["Engine", Sequence[Candidate], "VerificationSpec", int, Any], list[Row]]

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


@dataclass(frozen=True)
class Verifier:
    """A verification method: its scoring function and how its rows are keyed and computed."""

    name: str
    verify: Method  # (engine, candidates, spec, seed, prompt book) -> rows
    repeated: bool = False  # k verifications per candidate (verification_index 0..k-1)
    written: bool = False  # rows are written checks (sample i of the verifier prompt): cached by that prompt
    per_prompt: bool = False  # a prompt's candidates are verified together (one row per round)
    needs_model: bool = True  # False: rows come from the candidates alone (no engine, no prompt book)
    settings: tuple[str, ...] = ()  # VerificationSpec fields that only this method's rows depend on


VERIFIERS: dict[str, Verifier] = {}


def register(verifier: Verifier) -> Verifier:
    """Add a method to `VERIFIERS`; each method module registers itself once, on import."""
    if verifier.name in VERIFIERS:
        raise ValueError(f"verification method {verifier.name!r} is registered twice")
    VERIFIERS[verifier.name] = verifier
    return verifier


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
