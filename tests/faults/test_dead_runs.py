"""Issue 14.1: a run killed with `kill -9` while it holds the `model` pool never blocks later runs.

Real processes, a real DAGSTER_HOME (SQLite) and a real SIGKILL: `selfimprove demo` on a one-round micro
experiment is killed while a model step holds the pool; the next `selfimprove demo` frees the dead run's
slot, marks it failed and finishes. A run that waits behind a live holder says so at INFO, and frees the
slot as soon as the holder's process is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from selfimprove.instance import HOST_TAG, PID_TAG, POOL, START_TAG, dagster_yaml, ensure_dagster_home, process_tags
from tests.conftest import MICRO_SPEC

REPO = Path(__file__).resolve().parents[1]
SELFIMPROVE = Path(sys.executable).with_name("selfimprove")
RUN_TIMEOUT_S = 240


@pytest.fixture
def env(tmp_path: Path, micro_model: Path) -> dict[str, str]:
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    spec = {**MICRO_SPEC, "name": "deadrun", "rounds": 1}
    (experiments / "deadrun.yaml").write_text(yaml.safe_dump(spec))
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(dagster_yaml(home))
    dg.DagsterInstance.from_config(str(home)).dispose()  # create the SQLite storages before two processes open them
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SELFIMPROVE_EXPERIMENTS": str(experiments),
        "SELFIMPROVE_WAREHOUSE": str(tmp_path / "warehouse"),
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }


def instance(env: dict[str, str]) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(env["DAGSTER_HOME"])


def demo(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(SELFIMPROVE), "demo", "--experiment", "deadrun"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def finish(proc: subprocess.Popen, log: Path) -> str:
    try:
        proc.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"the run hung for {RUN_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    return text


@pytest.mark.slow
def test_run_after_a_killed_run_does_not_hang(env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "killed.log"
    proc = demo(env, log)
    with instance(env) as inst:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not inst.event_log_storage.get_concurrency_info(POOL).active_run_ids:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no step claimed the model pool"
            time.sleep(0.1)
        (dead,) = inst.event_log_storage.get_concurrency_info(POOL).active_run_ids
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9 while the run holds the pool
    proc.wait()

    log2 = tmp_path / "rerun.log"
    text = finish(demo(env, log2), log2)
    assert f"freed the pool slots of run {dead}" in text
    with instance(env) as inst:
        run = inst.get_run_by_id(dead)
        assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
        assert not inst.event_log_storage.get_concurrency_info(POOL).active_run_ids
        assert inst.event_log_storage.get_concurrency_info(POOL).limit == 1


@pytest.mark.slow
def test_waiting_run_says_who_holds_the_pool_and_frees_it_when_the_holder_dies(
    env: dict[str, str], tmp_path: Path
) -> None:
    with instance(env) as inst:
        holder = inst.create_run_for_job(dg.GraphDefinition("holder").to_job(), tags=process_tags())
        inst.event_log_storage.set_concurrency_slots(POOL, 1)
        claim = inst.event_log_storage.claim_concurrency_slot(POOL, holder.run_id, "hold", 0)
        assert claim.is_claimed
    log = tmp_path / "waiting.log"
    proc = demo(env, log)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while "waiting for pool 'model'" not in log.read_text():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no INFO line about the wait:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    line = next(ln for ln in log.read_text().splitlines() if "waiting for pool 'model'" in ln)
    assert " - INFO - " in line or "INFO" in line, line
    assert f"held by run {holder.run_id[:8]} of holder" in line and f"pid {os.getpid()}" in line, line

    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs: the holder's process "died"
    with instance(env) as inst:
        inst.add_run_tags(holder.run_id, {PID_TAG: str(gone.pid), START_TAG: "", HOST_TAG: process_tags()[HOST_TAG]})
    text = finish(proc, log)
    assert f"freed the 'model' pool slot of dead run {holder.run_id}" in text
    with instance(env) as inst:
        run = inst.get_run_by_id(holder.run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.FAILURE


def test_every_command_gives_the_pool_its_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18.2: the limit does not depend on `selfimprove demo` having written dagster.yaml."""
    from selfimprove.instance import prepare_instance

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # a home made by hand: no pool settings
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert prepare_instance() == home
    with dg.DagsterInstance.from_config(str(home)) as inst:
        assert inst.event_log_storage.get_concurrency_info(POOL).limit == 1
    fresh = tmp_path / "fresh"
    monkeypatch.setenv("DAGSTER_HOME", str(fresh))
    assert ensure_dagster_home() == fresh and (fresh / "dagster.yaml").read_text() == dagster_yaml(fresh)
