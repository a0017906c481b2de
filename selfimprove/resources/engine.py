"""The engine contract, implemented by the transformers and vLLM engines.

Rule every engine keeps: sample `i` of a prompt depends only on (weights, prompt, sampling, seed, i),
never on the batch it shares or on `n`. Engines derive a per-sample seed with `sample_seed` and
draw that sample's randomness from it alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, Protocol, TypeVar, runtime_checkable


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters. temperature == 0 means greedy decoding."""

    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 128
    stop: tuple[str, ...] = ()

    def to_json(self) -> str:
        """Canonical JSON, part of every sample's cache key: made once per instance (frozen, so it never changes)."""
        return self._json

    @cached_property
    def _json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class Generation:
    """One sampled continuation."""

    prompt_index: int  # index into the `prompts` argument
    sample_index: int  # i in [first_sample, first_sample + n)
    text: str  # the continuation only, without the prompt, EOS or stop string
    num_tokens: int
    finish_reason: str  # "eos", "stop" or "length"
    sample_seed: int  # the seed this sample's randomness came from


def sample_seed(seed: int, prompt: str, sample_index: int) -> int:
    """The per-sample seed: a hash of (seed, prompt text, sample index), in [0, 2**63)."""
    h = hashlib.sha256(f"{seed}\x1f{sample_index}\x1f{prompt}".encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


@runtime_checkable
class Engine(Protocol):
    """What every engine offers. `weight_digest` is the content hash of the weights it serves."""

    engine_name: str
    weight_digest: str

    def generate(
        self,
        prompts: Sequence[str],
        n: int,
        sampling: Sampling,
        seed: int,
        first_sample: int = 0,
    ) -> list[Generation]:
        """Samples first_sample .. first_sample+n-1 of every prompt, ordered by (prompt, sample)."""
        ...

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        """Per-token log-probabilities of each continuation after its prompt (teacher forcing)."""
        ...

    def close(self) -> None:
        """Free the model (and any engine process)."""
        ...


def generate_distinct(
    engine: Engine, prompts: Sequence[str], n: int, sampling: Sampling, seed: int
) -> dict[str, list[Generation]]:
    """The n samples of each distinct prompt, generated once and keyed by prompt text. By the engine
    rule a repeated prompt would draw exactly these samples again, so this is exact, not an approximation."""
    unique = list(dict.fromkeys(prompts))
    out: dict[str, list[Generation]] = {p: [] for p in unique}
    for g in engine.generate(unique, n, sampling, seed):
        out[unique[g.prompt_index]].append(g)
    return out


U = TypeVar("U")
R = TypeVar("R")


def map_units(engine: Engine, fn: Callable[[Engine, U], R], units: Sequence[U]) -> Iterator[tuple[int, R]]:
    """(index, fn(engine, unit)) for every unit of a stage's work.

    An engine spread over workers (`RayEngine`) offers `map_units` itself and yields in the order units
    finish; any other engine runs them here, one after another. `fn` must be picklable (a module-level
    function or a partial of one), since it travels to the workers.
    """
    spread: Any = getattr(engine, "map_units", None)
    if spread is not None:
        yield from spread(fn, units)
        return
    for i, unit in enumerate(units):
        yield i, fn(engine, unit)
