"""Dagster's sqlite event log, without an fsync per event.

Dagster's `SqliteEventLogStorage` opens a connection for every event it stores and closes it again.
Closing the last connection of a WAL database checkpoints it into the database file, an fsync each
time: about 20 ms per event against 0.15 ms on a connection kept open (`bench/sqlite_commits.py`), and
most of the Dagster overhead of a demo round (`bench/dagster_overhead.py`, docs/benchmarks.md).

`EventLogStorage` is that storage with one engine per database kept open (the index and the most
recently used run shards), committing at `synchronous=NORMAL`: a commit survives a crash of the process;
a power cut may lose the last commits, never the database. Since a run's database file now changes only
at checkpoints, the webserver's watcher of a running run's log also follows the run's WAL file.
A new run's database is a copy of an empty one that Dagster's own code initialized once per home and Dagster
version (`.run-template-<version>.sqlite` beside the runs; not `*.db`, so it is no run): creating the tables
and stamping the alembic revision loaded every migration script, about 50 ms per run against 0.1 ms for the
copy (docs/benchmarks.md).
The project's dagster.yaml (`selfimprove.instance.dagster_yaml`) selects it; the files are Dagster's own
layout (`$DAGSTER_HOME/history/runs/*.db`), so a home can switch back and forth.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
    SqliteEventLogStorageWatchdog,
)
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool
from watchdog.events import FileSystemEvent, PatternMatchingEventHandler
from watchdog.observers import Observer

KEPT_OPEN = 8  # databases with an open engine per process: the index and the latest run shards


class EventLogStorage(SqliteEventLogStorage):
    """Dagster's sqlite event log storage, with each database's connection kept open (see the module)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]) -> Any:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.pop(shard, None)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard), connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
            )
            event.listen(engine, "connect", _commit_without_fsync)
        self._engines[shard] = engine  # most recently used last
        while len(self._engines) > KEPT_OPEN:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _initdb(self, engine: Engine, for_index_shard: bool = False) -> None:
        """A new run's database as a copy of the template; the index and an existing database (another process's,
        or one made first by a process that raced this one) go through Dagster's own initialization."""
        path = engine.url.database
        if for_index_shard or not path or path == self.path_for_shard(INDEX_SHARD_NAME) or os.path.exists(path):
            return super()._initdb(engine, for_index_shard)
        tmp = self._tmp()
        try:
            shutil.copyfile(self._template(), tmp)
            try:
                os.link(tmp, path)  # only where there is no database yet
            except FileExistsError:
                super()._initdb(engine)
        finally:
            _remove(tmp)

    def _template(self) -> str:
        """An empty run database initialized by Dagster's own code, made once per home and Dagster version."""
        template = os.path.join(self._base_dir, f".run-template-{dg.__version__}.sqlite")
        if not os.path.exists(template):
            tmp = self._tmp()
            engine = create_engine(f"sqlite:///{tmp}", poolclass=NullPool)  # closed after each use: no WAL left
            try:
                super()._initdb(engine)
                engine.dispose()
                os.replace(tmp, template)
            finally:
                engine.dispose()
                for leftover in (tmp, f"{tmp}-wal", f"{tmp}-shm"):
                    _remove(leftover)
        return template

    def _tmp(self) -> str:
        return os.path.join(self._base_dir, f".{os.getpid()}-{uuid.uuid4().hex}.tmp")  # not `*.db`: no run

    def watch(self, run_id: str, cursor: str | None, callback: Any) -> None:
        if not self._obs:
            self._obs = Observer()
            self._obs.start()
        watchdog = RunLogWatchdog(self, run_id, callback, cursor)
        self._watchers[run_id][callback] = (watchdog, self._obs.schedule(watchdog, self._base_dir, recursive=True))

    def _dispose_engines(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        self._dispose_engines()
        super().wipe()

    def dispose(self) -> None:
        self._dispose_engines()
        super().dispose()


class RunLogWatchdog(SqliteEventLogStorageWatchdog):
    """Dagster's watcher of a run's database, also woken by writes to the database's WAL file."""

    def __init__(self, storage: EventLogStorage, run_id: str, callback: Any, cursor: str | None) -> None:
        super().__init__(storage, run_id, callback, cursor)
        PatternMatchingEventHandler.__init__(self, patterns=[self._log_path, f"{self._log_path}-wal"])

    def on_modified(self, event: FileSystemEvent) -> None:
        self._process_log()


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _commit_without_fsync(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")
