"""Engines for the fault tests, importable on the Ray workers (the nodes run with the repo on PYTHONPATH)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfimprove.resources.engine import Engine, Generation, Sampling
from selfimprove.resources.engines import open_engine
from selfimprove.spec import ModelSpec


class Slow:
    """Test double: a real engine whose generate calls take at least `delay` seconds longer."""

    def __init__(self, inner: Engine, delay: float) -> None:
        self.inner, self.delay = inner, delay
        self.engine_name, self.weight_digest = inner.engine_name, inner.weight_digest

    def generate(
        self, prompts: Sequence[str], n: int, sampling: Sampling, seed: int, first_sample: int = 0
    ) -> list[Generation]:
        out = self.inner.generate(prompts, n, sampling, seed, first_sample=first_sample)
        time.sleep(self.delay)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def slow_open(path: str | Path, model: ModelSpec, delay: float = 1.0) -> Engine:
    return Slow(open_engine(path, model), delay)
