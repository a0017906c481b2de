"""A whole experiment with `execution.backend: ray` over the two-node cluster, its warehouse on s3:// (moto's
S3 server on 127.0.0.1), its LoRA steps as Ray tasks on the node that has the `trainer` resource; every
table equal to the in-process run's, and `selfimprove sql` queries the s3 warehouse through fsspec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from selfimprove.definitions import build_definitions
from selfimprove.resources.ray_cluster import LocalRayCluster
from selfimprove.resources.warehouse import Warehouse
from selfimprove.spec import ExperimentSpec
from tests.conftest import micro_spec
from tests.ray.conftest import REPO, ray_execution
from tests.ray.test_ray_backend import differing

ray = pytest.importorskip("ray", reason="ray is not installed here: run `make test-ray` (.venv-ray)")

ROUNDS = 2
STAGES = ["generations", "verifications", "eval"]
S3_ROOT = "s3://warehouse/selfimprove"


def run(spec: ExperimentSpec, root: str) -> dg.ExecuteInProcessResult:
    job = build_definitions([spec], root=root).get_job_def("micro_job")
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
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = tmp_path / "in_process"
    run(micro_spec(rounds=ROUNDS), str(local))
    expected = read_all(str(local))

    # a second state home (shared by every node: same machine), so the LoRA steps train again on Ray
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "embedded").symlink_to(state_home / "models" / "embedded")
    monkeypatch.setenv("SELFIMPROVE_HOME", str(home))
    execution = ray_execution(ray_cluster, 2, train_resources={"num_cpus": 1, "resources": {"trainer": 1}})
    result = run(micro_spec(rounds=ROUNDS, execution=execution), S3_ROOT)

    got = read_all(S3_ROOT)
    for (stage, r), table in expected.items():  # model_path names the other state home: not compared
        ours, theirs = (
            t.drop_columns([c for c in ["model_path"] if c in t.column_names]) for t in (got[(stage, r)], table)
        )
        assert not differing(ours, theirs), f"round {r} {stage} differs on Ray"
    trainer_node = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("trainer"))
    for r in range(ROUNDS):
        meta = result.asset_materializations_for_node(f"micro__round_{r}__checkpoint")[-1].metadata
        assert meta["trained_on_ray_node_id"].value == trainer_node
        assert meta["trained_on_pid"].value != os.getpid()
        ours = Warehouse(S3_ROOT).read("checkpoint", "micro", r).column("weight_digest")[0].as_py()
        theirs = Warehouse(str(local)).read("checkpoint", "micro", r).column("weight_digest")[0].as_py()
        assert ours == theirs and str(home) in Warehouse(S3_ROOT).read("checkpoint", "micro", r)["path"][0].as_py()

    query = "SELECT round, count(*) AS n, count_if(correct) AS ok FROM generations GROUP BY round ORDER BY round"
    out = subprocess.run(
        [sys.executable, "-m", "selfimprove.cli", "sql", "--format", "json", query],
        env={**os.environ, "SELFIMPROVE_WAREHOUSE": S3_ROOT},
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
