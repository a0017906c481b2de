"""The `execution:` block: in-process by default, Ray by config only; a bad block names the field."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from selfimprove.resources.engines import EngineResource
from selfimprove.resources.ray_engine import RayNotInstalledError
from selfimprove.spec import SpecError, load_spec, parse_spec
from tests.conftest import micro_spec

VALID = {"name": "x", "model": {"embedded": "micro"}}


def test_default_is_in_process() -> None:
    ex = parse_spec(VALID).execution
    assert ex.backend == "in_process" and ex.workers == 1


def test_ray_block_parses() -> None:
    data = {
        **VALID,
        "execution": {
            "backend": "ray",
            "address": "auto",
            "workers": 4,
            "worker_resources": {"num_gpus": 1, "num_cpus": 2},
            "train_resources": {"num_gpus": 1, "resources": {"trainer": 1}},
        },
    }
    ex = parse_spec(data).execution
    assert (ex.backend, ex.address, ex.workers) == ("ray", "auto", 4)
    assert ex.worker_resources.num_gpus == 1 and ex.threads == 2
    assert ex.train_resources.resources == {"trainer": 1}


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ({"workers": 2}, "execution: Value error, workers apply to backend: ray only"),
        ({"backend": "ray", "workers": 0}, "execution.workers"),
        ({"backend": "dask"}, "execution.backend"),
        ({"backend": "ray", "worker_resources": {"gpus": 1}}, "execution.worker_resources.gpus"),
    ],
)
def test_bad_block_names_the_field(block: dict, field: str) -> None:
    with pytest.raises(SpecError, match="my.yaml") as err:
        parse_spec({**VALID, "execution": block}, "my.yaml")
    assert field in str(err.value)


def test_execution_never_enters_a_cache_key() -> None:
    """Rows do not depend on the backend, so switching it must reuse every cached row."""
    a = micro_spec()
    b = micro_spec(execution={"backend": "ray", "workers": 3})
    assert a.generation == b.generation and a.verification == b.verification and a.distill == b.distill


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="ray is installed here (tests/ray)")
def test_ray_backend_without_ray_says_how_to_install(micro_model: Path) -> None:
    spec = micro_spec(execution={"backend": "ray"})
    with pytest.raises(RayNotInstalledError, match=r"pip install 'selfimprove\[ray\]'"):
        EngineResource().get(micro_model, spec.model, spec.execution)


def test_ray_demo_is_the_demo_but_for_where_it_runs() -> None:
    repo = Path(__file__).resolve().parents[1]
    demo, on_ray = (
        load_spec(repo / "experiments" / "demo.yaml"),
        load_spec(repo / "experiments" / "ray" / "demo_ray.yaml"),
    )
    assert on_ray.execution.backend == "ray" and on_ray.execution.address == "auto"
    skip = {"name", "description", "execution"}
    assert on_ray.model_dump(exclude=skip) == demo.model_dump(exclude=skip)
