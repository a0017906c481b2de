"""The project's event log storage (selfimprove/event_log.py): Dagster's sqlite layout and behaviour, with each
database's connection kept open, and a watcher (the webserver's live run log) that still sees every event."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events.log import EventLogEntry

from selfimprove.event_log import KEPT_OPEN, EventLogStorage
from selfimprove.instance import dagster_yaml


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "dagster.yaml").write_text(dagster_yaml(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    return tmp_path


@dg.asset
def number() -> int:
    return 1


@dg.asset
def successor(number: int) -> int:
    return number + 1


def test_the_project_instance_stores_runs_in_dagsters_layout(home: Path) -> None:
    job = dg.Definitions(assets=[number, successor]).resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage) is EventLogStorage
        run = job.execute_in_process(instance=instance)
        assert run.success
    # a second instance (another process: the webserver) reads what the first wrote
    with dg.DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("successor"))
        assert event is not None and event.run_id == run.run_id
        types = [e.dagster_event.event_type for e in instance.all_logs(run.run_id) if e.dagster_event]
        assert dg.DagsterEventType.RUN_SUCCESS in types
    files = sorted(p.name for p in (home / "history" / "runs").glob("*.db"))
    assert files == sorted([f"{run.run_id}.db", "index.db"])


def test_a_new_runs_database_is_a_copy_that_dagster_accepts_as_its_own(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster stamps the alembic revision of the template once per home and version, not of every run; another
    process (Dagster's own storage class) finds each run's database at the head revision and reads its events."""
    from dagster._core.storage.event_log.sqlite import sqlite_event_log
    from dagster._core.storage.sql import check_alembic_revision, get_alembic_config
    from sqlalchemy import create_engine

    stamped = []
    stamp = sqlite_event_log.stamp_alembic_rev
    monkeypatch.setattr(sqlite_event_log, "stamp_alembic_rev", lambda *a, **k: stamped.append(1) or stamp(*a, **k))
    job = dg.Definitions(assets=[number, successor]).resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        before = len(stamped)  # the index, when the home is new
        runs = [job.execute_in_process(instance=instance).run_id for _ in range(3)]
    assert len(stamped) - before == 1  # the template's
    folder = home / "history" / "runs"
    assert [p.name for p in folder.glob(".*")] == [f".run-template-{dg.__version__}.sqlite"]  # no temp file left
    assert sorted(p.name for p in folder.glob("*.db")) == sorted([*(f"{r}.db" for r in runs), "index.db"])
    plain = sqlite_event_log.SqliteEventLogStorage(str(folder))
    for run_id in runs:
        with create_engine(f"sqlite:///{folder / run_id}.db").connect() as conn:
            db_revision, head = check_alembic_revision(get_alembic_config(sqlite_event_log.__file__), conn)
        assert db_revision == head is not None
        types = [e.dagster_event.event_type for e in plain.get_logs_for_run(run_id) if e.dagster_event]
        assert types[-1] == dg.DagsterEventType.RUN_SUCCESS


def _entry(run_id: str, message: str) -> EventLogEntry:
    return EventLogEntry(error_info=None, level="INFO", user_message=message, run_id=run_id, timestamp=time.time())


def test_a_watcher_sees_events_that_a_kept_open_connection_wrote(home: Path) -> None:
    """The writer's connection stays open, so the run's database file does not change until a checkpoint; the
    watcher (as the webserver's live log of a CLI run) must still get each event, from the WAL file."""
    writer = EventLogStorage(str(home / "history" / "runs"))
    reader = EventLogStorage(str(home / "history" / "runs"))
    run_id = "f" * 8 + "-0000-0000-0000-" + "0" * 12
    writer.store_event(_entry(run_id, "first"))
    seen: list[str] = []

    def callback(entry: EventLogEntry, cursor: str) -> None:
        seen.append(entry.user_message)

    reader.watch(run_id, None, callback)
    try:
        for message in ("second", "third"):
            writer.store_event(_entry(run_id, message))
        deadline = time.monotonic() + 20
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        reader.end_watch(run_id, callback)
        reader.dispose()
        writer.dispose()
    assert seen == ["first", "second", "third"]


def test_engines_kept_open_are_bounded(home: Path) -> None:
    storage = EventLogStorage(str(home / "history" / "runs"))
    try:
        for i in range(KEPT_OPEN + 3):
            storage.store_event(_entry(f"{i:08d}-0000-0000-0000-000000000000", "x"))
        assert len(storage._engines) == KEPT_OPEN
        assert len(storage.get_all_run_ids()) == KEPT_OPEN + 3
    finally:
        storage.dispose()


def test_a_moved_home_gets_its_own_paths_and_a_users_yaml_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from selfimprove.instance import ensure_dagster_home

    old, moved, own = tmp_path / "old", tmp_path / "moved", tmp_path / "own"
    for home in (moved, own):
        home.mkdir()
    (moved / "dagster.yaml").write_text(dagster_yaml(old))  # written by the project for where it was
    (own / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # a user's
    for home in (moved, own):
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        assert ensure_dagster_home() == home
    assert (moved / "dagster.yaml").read_text() == dagster_yaml(moved)
    assert str(old) not in (moved / "dagster.yaml").read_text()
    assert (own / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
