"""Releasing the engine frees its weights at once, by reference counting: no garbage collection needed."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from selfimprove.resources.engine import Sampling
from selfimprove.resources.engines import EngineResource
from tests.conftest import micro_spec


def test_release_frees_the_weights_without_a_collection(micro_model: Path) -> None:
    engines = EngineResource()
    engines.release()
    engine = engines.get(micro_model, micro_spec().model)
    engine.generate(["x*2+1=5\n"], 2, Sampling(max_new_tokens=4), seed=0)  # a used engine (KV caches made)
    model = weakref.ref(engine.model)  # type: ignore[attr-defined]
    weight = weakref.ref(next(engine.model.parameters()))  # type: ignore[attr-defined]
    del engine
    gc.disable()
    try:
        engines.release()
        assert model() is None and weight() is None
    finally:
        gc.enable()
