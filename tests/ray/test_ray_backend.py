"""`execution.backend: ray` on a real two-node cluster: the same rows as in-process for 1, 2 and 3 workers,
and nothing lost or duplicated when a worker or the driver is killed mid-stage."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

import selfimprove.resources.engines as engines_mod
from selfimprove.definitions import build_definitions
from selfimprove.resources.ray_cluster import LocalRayCluster
from selfimprove.resources.ray_engine import RayEngine
from selfimprove.resources.warehouse import Warehouse
from selfimprove.spec import ExperimentSpec
from tests.conftest import MICRO_SPEC, micro_spec
from tests.ray.conftest import REPO, ray_execution
from tests.ray.helpers import slow_open

ray = pytest.importorskip("ray", reason="ray is not installed here: run `make test-ray` (.venv-ray)")

GENERATION = {**MICRO_SPEC["generation"], "shard_prompts": 1}  # type: ignore[dict-item]
VERIFICATION = {"methods": ["mc", "cot_binary"], "k": 2, "max_new_tokens": 24}
ROUND_0 = ["generations", "verifications", "eval"]


def spec(execution: dict[str, Any] | None = None) -> ExperimentSpec:
    extra = {"execution": execution} if execution else {}
    return micro_spec(generation=GENERATION, verification=VERIFICATION, **extra)


def keys(stages: list[str]) -> set[dg.AssetKey]:
    return {dg.AssetKey(["micro", "base_model"]), dg.AssetKey(["micro", "prompts"])} | {
        dg.AssetKey(["micro", "round_0", s]) for s in stages
    }


def materialize(spec: ExperimentSpec, root: Path, stages: list[str]) -> dg.ExecuteInProcessResult:
    job = build_definitions([spec], root=str(root)).resolve_implicit_global_asset_job_def()
    result = job.get_subset(asset_selection=keys(stages)).execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    return result


def tables(root: Path, stages: list[str]) -> dict[str, pa.Table]:
    return {s: Warehouse(root).read(s, "micro", 0) for s in stages}


def metadata(result: dg.ExecuteInProcessResult, stage: str) -> dict[str, Any]:
    mats = result.asset_materializations_for_node(f"micro__round_0__{stage}")
    return {k: v.value for k, v in mats[-1].metadata.items()}


def differing(a: pa.Table, b: pa.Table) -> list[str]:
    """Columns whose values differ, NaN equal to NaN (all columns if the schemas or lengths differ)."""
    if a.schema != b.schema or a.num_rows != b.num_rows:
        return [f"schema/rows: {a.schema.names} x {a.num_rows} vs {b.schema.names} x {b.num_rows}"]
    return [c for c in a.column_names if json.dumps(a.column(c).to_pylist()) != json.dumps(b.column(c).to_pylist())]


def ray_engine() -> RayEngine:
    (engine,) = engines_mod._loaded.values()
    assert isinstance(engine, RayEngine)
    return engine


@pytest.fixture(scope="module")
def reference(micro_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pa.Table]:
    """Round 0's generations, verifications and eval, in-process (the default backend)."""
    root = tmp_path_factory.mktemp("in_process")
    materialize(spec(), root, ROUND_0)
    ref = tables(root, ROUND_0)
    assert ref["generations"].num_rows == 6 * 4 and ref["verifications"].num_rows == 6 * 4 * 3
    return ref


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_same_rows_as_in_process(
    ray_cluster: LocalRayCluster, reference: dict[str, pa.Table], tmp_path: Path, workers: int
) -> None:
    materialize(spec(ray_execution(ray_cluster, workers)), tmp_path, ROUND_0)
    engine = ray_engine()
    assert len(engine.actors) == workers
    assert len({node for *_, node in engine.workers}) == min(workers, 2)  # SPREAD over both nodes
    assert set(engine.units_done) == {pid for _, _, pid, _ in engine.workers}  # every worker took shards
    assert os.getpid() not in engine.units_done
    got = tables(tmp_path, ROUND_0)
    for stage in ROUND_0:
        assert not differing(got[stage], reference[stage]), f"{stage} differs with {workers} Ray workers"


def test_worker_killed_mid_shard_stage_completes(
    ray_cluster: LocalRayCluster,
    reference: dict[str, pa.Table],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engines_mod, "open_engine", functools.partial(slow_open, delay=1.5))
    killed: list[int] = []

    def kill_one_worker() -> None:  # once the workers are up and busy, SIGKILL one of them
        deadline = time.monotonic() + 120
        while not engines_mod._loaded and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.7)  # every worker is inside a 1.5 s unit now
        pid = ray_engine().workers[0][2]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    result = materialize(spec(ray_execution(ray_cluster, 2)), tmp_path, ["generations"])
    killer.join(5)
    assert killed, "the worker was never killed"
    engine = ray_engine()
    pids_now = {ray.get(a.identity.remote())[2] for a in engine.actors}
    assert killed[0] not in pids_now and len(pids_now) == 2  # Ray restarted the actor in a new process
    got = Warehouse(tmp_path).read("generations", "micro", 0)
    assert got.column("sample_id").to_pylist() == reference["generations"].column("sample_id").to_pylist()
    assert not differing(got, reference["generations"])  # nothing lost, nothing twice
    assert metadata(result, "generations")["computed_rows"] == 24


DRIVER = """
import functools, json, sys
import dagster as dg
import selfimprove.resources.engines as engines
from selfimprove.definitions import build_definitions
from selfimprove.spec import parse_spec
from tests.ray.helpers import slow_open

root, data = sys.argv[1], json.loads(sys.argv[2])
engines.open_engine = functools.partial(slow_open, delay=2.0)
job = build_definitions([parse_spec(data)], root=root).resolve_implicit_global_asset_job_def()
keys = {dg.AssetKey(k) for k in (["micro", "base_model"], ["micro", "prompts"], ["micro", "round_0", "generations"])}
sys.exit(0 if job.get_subset(asset_selection=keys).execute_in_process().success else 1)
"""


def test_driver_killed_rerun_resumes_from_finished_shards(
    ray_cluster: LocalRayCluster, reference: dict[str, pa.Table], tmp_path: Path
) -> None:
    data = spec(ray_execution(ray_cluster, 2)).model_dump(mode="json")
    env = {**os.environ, "PYTHONPATH": str(REPO), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    (tmp_path / "dagster_home").mkdir()
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path), json.dumps(data)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    shard_dir = tmp_path / "_staging" / "generations" / "experiment=micro" / "round=0"
    deadline = time.monotonic() + 180
    try:
        while len(list(shard_dir.glob("*/shard-*.parquet"))) < 2:
            assert driver.poll() is None, f"driver ended first: {driver.stderr.read().decode()[-3000:]}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no two shards finished within 180 s"
            time.sleep(0.05)
    finally:
        driver.kill()
        driver.wait()
    finished = len(list(shard_dir.glob("*/shard-*.parquet")))
    assert 2 <= finished < 6, finished
    assert not Warehouse(tmp_path).exists("generations", "micro", 0)
    # Ray ends the dead driver's workers and frees their CPUs
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        assert time.monotonic() < deadline, "the killed driver's workers still hold CPUs after 60 s"
        time.sleep(0.5)
    result = materialize(spec(ray_execution(ray_cluster, 2)), tmp_path, ["generations"])
    numbers = metadata(result, "generations")
    assert numbers["reused_rows"] >= finished * 4 and numbers["reused_rows"] + numbers["computed_rows"] == 24
    assert not differing(Warehouse(tmp_path).read("generations", "micro", 0), reference["generations"])
    assert not list(shard_dir.glob("*/shard-*.parquet"))  # the finished run cleared its shards


def test_more_workers_than_the_cluster_holds_fail_with_what_is_free(
    ray_cluster: LocalRayCluster, micro_model: Path
) -> None:
    s = micro_spec(execution=ray_execution(ray_cluster, 5, start_timeout=20))  # 5 x 1 CPU on 4 CPUs
    with pytest.raises(RuntimeError, match=r"5 Ray workers asking .* did not all start within 20 s"):
        RayEngine(micro_model, s.model, s.execution, engines_mod.open_engine)
    deadline = time.monotonic() + 30  # the placed ones were ended: their CPUs are free again
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
