"""What an update is: how a LoRA model learns from one round's training data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from selfimprove.spec import DistillSpec


@dataclass(frozen=True)
class TrainExample:
    """One filtered sample for SFT; `weight` is its filter weight (1, or exp(score/beta) under reweighting)."""

    prompt: str
    completion: str
    weight: float = 1.0


@dataclass(frozen=True)
class PreferencePair:
    """One (chosen, rejected) pair of completions of the same prompt, from the verifier's ranking."""

    prompt: str
    chosen: str
    rejected: str


# fit(model, tokenizer, data, spec, seed, device) trains the peft model in place and returns its loss curve
Fit = Callable[[Any, Any, Sequence[Any], "DistillSpec", int, str], list[float]]


@dataclass(frozen=True)
class Update:
    """A distillation update: its name in `distill.update`, the round table it trains on, and its fit."""

    name: str
    data: Literal["filtered", "pairs"]  # filtered: TrainExample rows; pairs: PreferencePair rows
    fit: Fit
    description: str
