"""The `execution:` block: in-process by default, Ray by config only; a bad block names the field."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import dagster as dg
import pytest

import selfimprove.resources.engines as engines_mod
from selfimprove.definitions import build_definitions
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


def test_switching_to_ray_reuses_every_cached_row(micro_model: Path, tmp_path: Path) -> None:
    """`execution` enters no key: after an in-process run, the same stages with backend ray reuse every row
    and never connect to Ray (no engine is built), so this runs without ray installed."""
    stages = {dg.AssetKey(["micro", "base_model"]), dg.AssetKey(["micro", "prompts"])}
    stages |= {dg.AssetKey(["micro", "round_0", s]) for s in ("generations", "verifications", "eval")}
    for spec in (micro_spec(), micro_spec(execution={"backend": "ray", "address": "127.0.0.1:1", "workers": 3})):
        EngineResource().release()
        job = build_definitions([spec], root=str(tmp_path)).resolve_implicit_global_asset_job_def()
        result = job.get_subset(asset_selection=stages).execute_in_process(instance=dg.DagsterInstance.ephemeral())
        assert result.success
    for stage in ("generations", "verifications"):
        meta = result.asset_materializations_for_node(f"micro__round_0__{stage}")[-1].metadata
        assert meta["computed_rows"].value == 0 and meta["reused_rows"].value > 0
    assert not engines_mod._loaded  # no engine, no Ray connection


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
