"""The Ray backend: an engine spread over Ray actors, each holding one engine loaded once.

`RayEngine` keeps the Engine contract (a `generate` or `score` call runs whole on one actor) and adds
`map_units`: the stages hand it their work units (a shard, or the group of shards one in-process
generate call would cover) and it runs each on a free actor through Ray's `ActorPool`, yielding results
as they finish so the driver writes every shard as soon as it is done. A unit runs exactly the engine
call the in-process backend makes for it, so the rows do not depend on the backend or the worker count.

Faults: actors are started with `max_restarts` and `max_task_retries`, so a killed worker process is
restarted (its engine reloaded) and its unit retried by Ray. The actors belong to the driver; when the
driver dies Ray ends them, and a rerun resumes from the shards the driver had written.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from selfimprove.resources.engine import Engine, Generation, Sampling

if TYPE_CHECKING:
    from selfimprove.spec import ExecutionSpec, ModelSpec, RayResources

log = logging.getLogger(__name__)

U = TypeVar("U")
R = TypeVar("R")
Opener = Callable[[str, "ModelSpec"], Engine]


class RayNotInstalledError(ImportError):
    """`execution.backend: ray` without the ray package."""

    def __init__(self) -> None:
        super().__init__(
            "execution.backend: ray needs the ray package: pip install 'selfimprove[ray]' (docs/scale-out.md)"
        )


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayNotInstalledError() from None
    return ray


def connect(execution: ExecutionSpec) -> Any:
    """Join (or start) the Ray cluster `execution.address` names, once per process; returns the ray module."""
    ray = _ray()
    if not ray.is_initialized():
        log.info("connecting to Ray at %s", execution.address or "a new local instance")
        ray.init(
            address=execution.address,
            runtime_env=dict(execution.runtime_env) or None,
            include_dashboard=False if execution.address is None else None,
            logging_level=logging.WARNING,
            log_to_driver=True,
        )
    return ray


def ray_options(resources: RayResources) -> dict[str, Any]:
    """Ray `.options(...)` keywords for a resource request."""
    out: dict[str, Any] = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus}
    if resources.memory is not None:
        out["memory"] = resources.memory
    if resources.resources:
        out["resources"] = dict(resources.resources)
    return out


class EngineWorker:
    """The body of one Ray actor: one engine, loaded once in `__init__` (again after a restart)."""

    def __init__(self, path: str, model: ModelSpec, threads: int, opener: Opener) -> None:
        import torch

        torch.set_num_threads(threads)
        self.engine = opener(path, model)

    def identity(self) -> tuple[str, str, int, str]:
        """(weight digest, engine name, pid, node id) of this worker."""
        import ray

        return self.engine.weight_digest, self.engine.engine_name, os.getpid(), ray.get_runtime_context().get_node_id()

    def run(self, fn: Callable[[Engine, Any], Any], index: int, unit: Any) -> tuple[int, int, Any]:
        return index, os.getpid(), fn(self.engine, unit)

    def generate(self, prompts: Sequence[str], n: int, sampling: Sampling, seed: int, first_sample: int) -> Any:
        return self.engine.generate(prompts, n, sampling, seed, first_sample=first_sample)

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        return self.engine.score(prompts, continuations)

    def tokenizer(self) -> Any:
        return getattr(self.engine, "tokenizer", None)


class RayEngine:
    """`execution.workers` engine actors on a Ray cluster, all serving the same weights."""

    def __init__(self, path: str | Path, model: ModelSpec, execution: ExecutionSpec, opener: Opener) -> None:
        """`opener(path, model)` builds a worker's engine (`engines.open_engine`); it travels to the workers."""
        ray = connect(execution)
        from ray.util import ActorPool

        actor = ray.remote(EngineWorker).options(
            **ray_options(execution.worker_resources),
            max_restarts=execution.max_restarts,
            max_task_retries=execution.max_restarts,
            scheduling_strategy="SPREAD",
        )
        self._ray = ray
        args = (str(path), model, execution.threads, opener)
        self.actors = [actor.remote(*args) for _ in range(execution.workers)]
        try:
            self.workers = ray.get([a.identity.remote() for a in self.actors], timeout=execution.start_timeout)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise RuntimeError(
                f"{execution.workers} Ray workers asking {ray_options(execution.worker_resources)} each did not all "
                f"start within {execution.start_timeout:.0f} s (execution.start_timeout); the cluster has "
                f"{ray.cluster_resources()}, of which {ray.available_resources()} are free"
            ) from None
        idents = {w[:2] for w in self.workers}
        if len(idents) != 1:
            self.close()
            raise RuntimeError(f"Ray workers loaded different weights from {path}: {sorted(idents)}")
        self.weight_digest, self.engine_name = idents.pop()
        self.pool = ActorPool(self.actors)
        self.units_done: dict[int, int] = {}  # units finished per worker process id
        nodes = len({w[3] for w in self.workers})
        log.info("%d %s workers on %d Ray node(s) serve %s", len(self.actors), self.engine_name, nodes, path)

    def map_units(self, fn: Callable[[Engine, U], R], units: Sequence[U]) -> Iterator[tuple[int, R]]:
        """(index, fn(engine, unit)) for every unit, in the order they finish, spread over the actors."""
        for index, pid, result in self.pool.map_unordered(lambda a, v: a.run.remote(fn, *v), list(enumerate(units))):
            self.units_done[pid] = self.units_done.get(pid, 0) + 1
            yield index, result

    def generate(
        self, prompts: Sequence[str], n: int, sampling: Sampling, seed: int, first_sample: int = 0
    ) -> list[Generation]:
        return self._ray.get(self.actors[0].generate.remote(list(prompts), n, sampling, seed, first_sample))

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        return self._ray.get(self.actors[0].score.remote(list(prompts), list(continuations)))

    @functools.cached_property
    def tokenizer(self) -> Any:
        """The engine's tokenizer (verifier prompts with a chat template need it), fetched from a worker."""
        return self._ray.get(self.actors[0].tokenizer.remote())

    def close(self) -> None:
        for a in self.actors:
            self._ray.kill(a)
        self.actors = []


def _where() -> dict[str, Any]:
    import ray

    return {"ray_node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


def _run_with_threads(fn: Callable[[], R], threads: int) -> tuple[R, dict[str, Any]]:
    import torch

    torch.set_num_threads(threads)
    return fn(), _where()


def run_task(fn: Callable[[], R], resources: RayResources, execution: ExecutionSpec) -> tuple[R, dict[str, Any]]:
    """`fn()` as one Ray task holding `resources` (retried by Ray if its worker dies); returns its result
    and where it ran (`ray_node_id`, `pid`). The driver needs none of those resources itself."""
    ray = connect(execution)
    remote = ray.remote(_run_with_threads).options(**ray_options(resources), max_retries=execution.max_restarts)
    return ray.get(remote.remote(fn, max(1, int(resources.num_cpus))))
