"""Fault injection: a generations run killed with SIGKILL mid-way resumes from its finished shards.

A subprocess materializes the micro experiment's base model, prompts and round-0 generations (one prompt
per shard) with an injected slowdown, and is killed with `kill -9` once at least one shard is finished.
The rerun must reuse those shards and end with exactly the table of an uninterrupted run; DuckDB never
sees the unfinished run's shards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

import selfimprove.resources.engines as engines_mod
from selfimprove.definitions import build_definitions
from selfimprove.resources.engine import Engine, Generation, Sampling
from selfimprove.resources.engines import EngineResource, open_engine
from selfimprove.resources.warehouse import Warehouse
from selfimprove.sql import SqlError, UnknownTableError, run_query
from tests.conftest import MICRO_SPEC, micro_spec

REPO = Path(__file__).resolve().parents[1]
N_PROMPTS, N = 6, 4
OVERRIDES = {"generation": {**MICRO_SPEC["generation"], "n": N, "shard_prompts": 1}}  # type: ignore[dict-item]
KEYS = [["micro", "base_model"], ["micro", "prompts"], ["micro", "round_0", "generations"]]

# Materializes base_model, prompts and round-0 generations, sleeping after every engine.generate call.
WORKER = """
import json, sys, time
import dagster as dg
import selfimprove.resources.engines as engines
from selfimprove.definitions import build_definitions
from tests.conftest import micro_spec

root, delay, overrides, keys = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
opened = engines.open_engine


class Slow:
    def __init__(self, inner):
        self.inner, self.engine_name, self.weight_digest = inner, inner.engine_name, inner.weight_digest

    def generate(self, *args, **kwargs):
        out = self.inner.generate(*args, **kwargs)
        time.sleep(delay)
        return out

    def __getattr__(self, name):
        return getattr(self.inner, name)


engines.open_engine = lambda path, model: Slow(opened(path, model))
job = build_definitions([micro_spec(**overrides)], root=root).resolve_implicit_global_asset_job_def()
job = job.get_subset(asset_selection={dg.AssetKey(k) for k in keys})
sys.exit(0 if job.execute_in_process(instance=dg.DagsterInstance.ephemeral()).success else 1)
"""


class Counting:
    """Test double: counts the samples a real engine is asked for."""

    def __init__(self, engine: Engine, counts: dict[str, int]) -> None:
        self.inner, self.counts = engine, counts
        self.engine_name, self.weight_digest = engine.engine_name, engine.weight_digest

    def generate(
        self, prompts: Sequence[str], n: int, sampling: Sampling, seed: int, first_sample: int = 0
    ) -> list[Generation]:
        self.counts["generated"] += len(prompts) * n
        return self.inner.generate(prompts, n, sampling, seed, first_sample=first_sample)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def shard_files(root: Path) -> list[Path]:
    return sorted((root / "_staging" / "generations").glob("experiment=micro/round=0/*/shard-*.parquet"))


def run_in_process(root: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Materialize the three assets here; returns the number of samples generated."""
    EngineResource().release()
    counts = {"generated": 0}
    with monkeypatch.context() as m:
        m.setattr(engines_mod, "open_engine", lambda path, model: Counting(open_engine(path, model), counts))
        job = build_definitions([micro_spec(**OVERRIDES)], root=str(root)).resolve_implicit_global_asset_job_def()
        job = job.get_subset(asset_selection={dg.AssetKey(k) for k in KEYS})
        assert job.execute_in_process(instance=dg.DagsterInstance.ephemeral()).success
    EngineResource().release()
    return counts["generated"]


def test_killed_run_resumes_from_finished_shards(
    micro_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "warehouse"
    args = [str(root), "2.0", json.dumps(OVERRIDES), json.dumps(KEYS)]
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    try:
        while not shard_files(root):
            assert proc.poll() is None, f"worker ended before any shard: {proc.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no shard finished within 120 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # kill -9: no cleanup of any kind
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()  # type: ignore[union-attr]

    finished = len(shard_files(root))
    assert 1 <= finished < N_PROMPTS  # killed in the middle
    wh = Warehouse(root)
    assert not wh.exists("generations", "micro", 0)

    # SQL while the unfinished run's shards lie in staging: they are neither a view nor readable
    tables = run_query(root, "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1")
    assert tables.column("view_name").to_pylist() == ["base_model", "prompts"]
    assert run_query(root, "SELECT count(*) AS n FROM prompts").column("n").to_pylist() == [N_PROMPTS + 4]
    with pytest.raises(UnknownTableError):
        run_query(root, "SELECT count(*) FROM generations")
    with pytest.raises(SqlError, match="Permission"):
        run_query(root, f"SELECT count(*) FROM read_parquet('{root}/_staging/**/*.parquet')")

    # rerun to completion: only the unfinished shards are generated
    generated = run_in_process(root, monkeypatch)
    assert generated == (N_PROMPTS - finished) * N
    assert shard_files(root) == []  # the finished run's shards are cleared
    resumed = wh.read("generations", "micro", 0)

    # the same experiment, uninterrupted, in a fresh warehouse
    fresh_root = tmp_path / "fresh"
    assert run_in_process(fresh_root, monkeypatch) == N_PROMPTS * N
    fresh = Warehouse(fresh_root).read("generations", "micro", 0)

    assert resumed.schema == fresh.schema
    assert resumed.to_pylist() == fresh.to_pylist()  # row for row, in order
    ids = resumed.column("sample_id").to_pylist()
    assert len(ids) == len(set(ids)) == N_PROMPTS * N  # no duplicate, no lost row
    counted = run_query(root, "SELECT count(*) AS n, count(DISTINCT sample_id) AS d FROM generations")
    assert counted.to_pylist() == [{"n": N_PROMPTS * N, "d": N_PROMPTS * N}]
