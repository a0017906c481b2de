"""docs/scale-out.md's instructions for this machine, run as written: a whole experiment with
`execution: {backend: ray, address: auto}` through `selfimprove demo` over the two-node cluster (found via
RAY_ADDRESS), its warehouse on s3:// (moto's S3 server on 127.0.0.1), its LoRA steps as Ray tasks on the
node that has the `trainer` resource; every table equal to the in-process run's, and `selfimprove sql`
queries the s3 warehouse through fsspec registered in DuckDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
import yaml

from selfimprove.definitions import build_definitions
from selfimprove.resources.ray_cluster import LocalRayCluster
from selfimprove.resources.warehouse import Warehouse
from selfimprove.spec import ExperimentSpec
from tests.conftest import micro_spec
from tests.ray.conftest import REPO
from tests.ray.test_ray_backend import differing

ray = pytest.importorskip("ray", reason="ray is not installed here: run `make test-ray` (.venv-ray)")

ROUNDS = 1  # round 0's LoRA step on Ray, and round 1's eval on its checkpoint
STAGES = ["generations", "verifications", "eval"]
S3_ROOT = "s3://warehouse/selfimprove"


def run(spec: ExperimentSpec, root: str) -> dg.ExecuteInProcessResult:
    job = build_definitions([spec], root=root).resolve_job_def("micro_job")
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    return result


def read_all(root: str) -> dict[tuple[str, int], pa.Table]:
    wh = Warehouse(root)
    out = {(s, r): wh.read(s, "micro", r) for s in STAGES for r in range(ROUNDS)}
    out[("eval", ROUNDS)] = wh.read("eval", "micro", ROUNDS)
    return out


@pytest.mark.slow
def test_experiment_on_ray_cluster_with_s3_warehouse(
    ray_cluster: LocalRayCluster,
    s3_endpoint: str,
    micro_model: Path,
    state_home: Path,
    tmp_path: Path,
) -> None:
    local = tmp_path / "in_process"
    run(micro_spec(rounds=ROUNDS), str(local))
    expected = read_all(str(local))

    # a second state home (shared by every node: same machine), so the LoRA steps train again on Ray
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "embedded").symlink_to(state_home / "models" / "embedded")
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    execution = {"backend": "ray", "address": "auto", "workers": 2}
    execution["train_resources"] = {"num_cpus": 1, "resources": {"trainer": 1}}
    data = micro_spec(rounds=ROUNDS, execution=execution).model_dump(mode="json", exclude_defaults=True)
    (experiments / "micro_on_ray.yaml").write_text(yaml.safe_dump({"name": "micro", **data}))
    env = {
        **os.environ,
        "RAY_ADDRESS": ray_cluster.address,
        "SELFIMPROVE_EXPERIMENTS": str(experiments),
        "SELFIMPROVE_HOME": str(home),
        "SELFIMPROVE_WAREHOUSE": S3_ROOT,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    demo = subprocess.run(
        [sys.executable, "-m", "selfimprove.cli", "demo", "--experiment", "micro"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stderr[-4000:]
    assert "micro: per-round results" in demo.stdout

    got = read_all(S3_ROOT)
    for (stage, r), table in expected.items():  # model_path names the other state home: not compared
        ours, theirs = (
            t.drop_columns([c for c in ["model_path"] if c in t.column_names]) for t in (got[(stage, r)], table)
        )
        assert not differing(ours, theirs), f"round {r} {stage} differs on Ray"
    trainer_node = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("trainer"))
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        for r in range(ROUNDS):
            event = instance.get_latest_materialization_event(dg.AssetKey(["micro", f"round_{r}", "checkpoint"]))
            meta = event.asset_materialization.metadata  # type: ignore[union-attr]
            assert meta["trained_on_ray_node_id"].value == trainer_node
    for r in range(ROUNDS):
        ours = Warehouse(S3_ROOT).read("checkpoint", "micro", r).column("weight_digest")[0].as_py()
        theirs = Warehouse(str(local)).read("checkpoint", "micro", r).column("weight_digest")[0].as_py()
        path = Warehouse(S3_ROOT).read("checkpoint", "micro", r)["path"][0].as_py()  # relative to the state home
        assert ours == theirs and (home / path / "adapter_config.json").is_file()  # written by the Ray task

    query = "SELECT round, count(*) AS n, count_if(correct)::INTEGER AS ok FROM generations GROUP BY 1 ORDER BY 1"
    out = subprocess.run(
        [sys.executable, "-m", "selfimprove.cli", "sql", "--format", "json", query],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    gens = [expected[("generations", r)] for r in range(ROUNDS)]
    assert rows == [
        {"round": r, "n": g.num_rows, "ok": sum(g.column("correct").to_pylist())} for r, g in enumerate(gens)
    ]
