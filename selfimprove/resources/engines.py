"""The engine resource: one loaded model per process, reused by every stage of a run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from selfimprove.resources.engine import Engine
from selfimprove.state import from_state

if TYPE_CHECKING:
    from selfimprove.spec import ExecutionSpec, ModelSpec

log = logging.getLogger(__name__)

_loaded: dict[tuple[str, str, str], Engine] = {}


def _transformers(path: str | Path, model: ModelSpec) -> Engine:
    from selfimprove.resources.transformers_engine import TransformersEngine

    return TransformersEngine.from_path(
        path,
        device=model.device,
        dtype=model.dtype,
        batch_size=model.batch_size,
        trust_remote_code=model.trust_remote_code,
        allow_pickle=model.allow_pickle,
    )


def _vllm(path: str | Path, model: ModelSpec) -> Engine:
    from selfimprove.resources.vllm_engine import VllmEngine  # type: ignore[import-not-found]

    return VllmEngine.from_path(path, model)


# `model.engine` names one of these; each imports its engine module only when used.
ENGINES: dict[str, Callable[[str | Path, ModelSpec], Engine]] = {"transformers": _transformers, "vllm": _vllm}


def open_engine(path: str | Path, model: ModelSpec) -> Engine:
    """Construct the engine the spec names on a local checkpoint folder (relative: in the state folder)."""
    return ENGINES[model.engine](from_state(path), model)


class EngineResource(dg.ConfigurableResource):
    """Hands out engines. At most one model is held per process: asking for another releases it.

    With the in-process executor, a round's generation, verification and eval stages therefore load
    their model once; `release()` frees it before LoRA training needs the device. With
    `execution.backend: ray` the engine is a `RayEngine`: `execution.workers` actors, each loading the
    model once, kept for every stage of the run until `release()` ends them. Every step of the
    `model` pool uses this resource, so its setup registers the run's process (`instance.register_run`):
    a run killed while holding the pool can then be told dead and its slot freed.
    """

    _watch: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        from selfimprove.instance import register_run

        self._watch = register_run(context)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._watch is not None:
            self._watch.stop()

    def get(self, path: str | Path, model: ModelSpec, execution: ExecutionSpec | None = None) -> Engine:
        """The engine on `path`; a relative path (as manifests record it) lies in the state folder."""
        path = from_state(path).resolve()
        ray = execution is not None and execution.backend == "ray"
        key = (str(path), model.model_dump_json(), execution.model_dump_json() if ray else "")
        if key not in _loaded:
            self.release()
            if ray:
                from selfimprove.resources.ray_engine import RayEngine

                log.info("starting %d Ray workers (%s engine) for %s", execution.workers, model.engine, path)
                _loaded[key] = RayEngine(path, model, execution, opener=open_engine)
            else:
                log.info("loading %s engine for %s", model.engine, path)
                _loaded[key] = open_engine(path, model)
        return _loaded[key]

    def release(self) -> None:
        """Close the loaded engine. Its weights are freed by reference counting (tests/test_engine_release.py);
        no full `gc.collect()`, which took about 0.5 s with torch and Dagster loaded."""
        for engine in _loaded.values():
            engine.close()
        _loaded.clear()
