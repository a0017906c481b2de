"""The fault-injection suite: `kill -9` at a point of every stage, rerun, and the final tables equal an
uninterrupted run's, nothing is left behind and no later run hangs.

Real processes (`selfimprove demo`), a real DAGSTER_HOME (SQLite) and a real SIGKILL: each run of the
chain kills itself (`selfimprove.faults`, SIGKILL: no cleanup code runs) at the next point, in the
order a run reaches them, and the next run resumes from what the killed ones left. Run by
`make test-faults` (the `faults` CI group), not by `make test`.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
import yaml

from selfimprove.instance import POOL, dagster_yaml
from selfimprove.resources.warehouse import Warehouse
from tests.conftest import MICRO_SPEC

REPO = Path(__file__).resolve().parents[2]
SELFIMPROVE = Path(sys.executable).with_name("selfimprove")
RUN_TIMEOUT_S = 300
# Where each run of the chain dies, in the order a run reaches them (every stage of a round).
KILL_POINTS = [
    "shard:generations",  # a generation shard is on disk, the others are not
    "shard:verifications",  # the same within verification
    "write:filtered",  # the filter's table computed, not written
    "lora:step",  # LoRA training after its first step
    "lora:saved",  # the adapter saved to its temp folder, not yet renamed into place
    "shard:eval",  # the next round's eval, one shard done
    "warehouse:tmp@2",  # the second table of the run written to its temp file, not yet moved into place
    "write:report",  # the report computed, not written
]
SPEC = {
    **MICRO_SPEC,
    "name": "faulty",
    "rounds": 1,
    "verification": {"methods": ["mc", "cot_binary"], "k": 2, "max_new_tokens": 24},
    "gap": {"bootstrap": 50, "max_parse_failure_rate": 1.0},  # the micro model's written checks rarely parse
}
VOLATILE = {"train_seconds", "reused"}  # how long training took, whether this run trained it


def setup_home(root: Path, micro_model: Path) -> dict[str, str]:
    experiments, home, dagster_home = root / "experiments", root / "home", root / "dagster_home"
    experiments.mkdir(parents=True)
    (experiments / "faulty.yaml").write_text(yaml.safe_dump(SPEC))
    shutil.copytree(micro_model, home / "models" / "embedded" / micro_model.name)
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(dagster_yaml(dagster_home))
    dg.DagsterInstance.from_config(str(dagster_home)).dispose()  # create the SQLite storages once
    env = {k: v for k, v in os.environ.items() if k not in ("SELFIMPROVE_WAREHOUSE", "SELFIMPROVE_KILL_AT")}
    return {
        **env,
        "SELFIMPROVE_HOME": str(home),
        "SELFIMPROVE_EXPERIMENTS": str(experiments),
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }


def demo(env: dict[str, str], log: Path, kill_at: str | None = None) -> tuple[int, float]:
    """Run `selfimprove demo --experiment faulty`; (exit status, seconds). A hang fails the test."""
    start = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(SELFIMPROVE), "demo", "--experiment", "faulty"],
            cwd=REPO,
            env={**env, **({"SELFIMPROVE_KILL_AT": kill_at} if kill_at else {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        proc.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"run {kill_at or 'without faults'} hung for {RUN_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
    return proc.returncode, time.monotonic() - start


def tables(env: dict[str, str]) -> dict[str, pa.Table]:
    """The final tables, upstream first (a drifted score is known before the tables made from it)."""
    wh = Warehouse(Path(env["SELFIMPROVE_HOME"]) / "warehouse")
    out = {s: wh.read(s, "faulty") for s in ("base_model", "prompts")}
    for stage in ("generations", "verifications", "filtered", "gap", "checkpoint", "eval"):
        out[f"{stage}/0"] = wh.read(stage, "faulty", 0)
    return {**out, "eval/1": wh.read("eval", "faulty", 1), "report": wh.read("report", "faulty")}


def rows(table: pa.Table) -> list[dict]:
    keep = [c for c in table.column_names if c not in VOLATILE]
    return [
        {k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
        for r in table.select(keep).to_pylist()
    ]


SCORE_REL_TOL = 1e-4  # a verifier score of the resumed chain vs the uninterrupted run (see assert_same_rows)
DERIVED = {"inputs", "path"}  # digests of upstream tables: a filter variant's inputs, a checkpoint's folder


def assert_same_rows(name: str, got: pa.Table, want: pa.Table, drifted: bool) -> bool:
    """Row for row equal, naming the differing fields; whether a `score` differed within SCORE_REL_TOL.

    The exception, printed when it occurs: 3 of 25 chains on 2026-12-01 (one in CI's own run) had one
    verification shard's mc scores differ by 4e-6 relative (0.4238798 vs 0.4238839, the same values each
    time); that batch, replayed alone in fresh processes, gave that value too, a few times in a few hundred,
    so it is the CPU forward pass, not the resumption (docs/reliability.md). Once a score drifted (`drifted`),
    and only then, the digests of tables made from those scores (`DERIVED`) may differ too; everything else
    must still be equal."""
    a, b = rows(got), rows(want)
    assert len(a) == len(b), (name, len(a), len(b))
    near_any = False
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        diff = {k: (x[k], y.get(k)) for k in x if x[k] != y.get(k)}
        u, v = diff.get("score", (None, None))
        floats = isinstance(u, float) and isinstance(v, float)
        near = {"score"} if floats and math.isclose(u, v, rel_tol=SCORE_REL_TOL) else set()
        if near:
            print(f"faults: {name} row {i} {x.get('sample_id')} {x.get('method')}: score {diff['score']}")
            near_any = True
        allowed = near | (DERIVED if drifted else set())
        assert set(diff) <= allowed, (name, i, diff)
    return near_any


@pytest.mark.slow
def test_kill_at_every_stage_then_rerun_equals_an_uninterrupted_run(micro_model: Path, tmp_path: Path) -> None:
    reference_env = setup_home(tmp_path / "reference", micro_model)
    status, seconds = demo(reference_env, tmp_path / "reference.log")
    assert status == 0, (tmp_path / "reference.log").read_text()[-3000:]
    print(f"\nuninterrupted run: {seconds:.0f} s")

    env = setup_home(tmp_path / "faulty", micro_model)
    for i, point in enumerate(KILL_POINTS):
        log = tmp_path / f"run{i}.log"
        status, seconds = demo(env, log, point)
        assert status == -signal.SIGKILL, f"run {i} never reached {point} (exit {status}):\n{log.read_text()[-3000:]}"
        print(f"run {i}: killed at {point} after {seconds:.0f} s")
    log = tmp_path / "final.log"
    status, seconds = demo(env, log)
    assert status == 0, log.read_text()[-3000:]
    print(f"final run: {seconds:.0f} s")

    # the final tables equal the uninterrupted run's, row for row
    expected, got = tables(reference_env), tables(env)
    drifted = False  # a verifier score differed in its 6th digit (see assert_same_rows)
    for name, table in expected.items():
        assert got[name].schema == table.schema, name
        drifted |= assert_same_rows(name, got[name], table, drifted)

    # nothing left behind: no staged shard or temp file, no temp model folder, no pool slot, dead runs failed
    home = Path(env["SELFIMPROVE_HOME"])
    assert [p for p in (home / "warehouse" / "_staging").rglob("*") if p.is_file()] == []
    assert [p for p in (home / "models").rglob(".*")] == []
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert not instance.event_log_storage.get_concurrency_info(POOL).claimed_slots
        runs = instance.get_runs()
        statuses = sorted(r.status.value for r in runs)
        assert statuses == ["FAILURE"] * len(KILL_POINTS) + ["SUCCESS"], statuses
