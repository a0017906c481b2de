"""The Parquet warehouse: one hive-partitioned table per stage under a local or fsspec root.

Layout (partition columns live only in the path, never inside the file):

    <root>/<stage>/experiment=<E>/round=<r>/data.parquet     round stages
    <root>/<stage>/experiment=<E>/data.parquet               experiment-level stages
    <root>/_staging/...                                      temp files and unfinished shards

Every write goes to a temp file under `_staging` first and is then moved into place, so a reader
(or DuckDB's `**/*.parquet` glob, which also matches dot-files) never sees a partial file.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from selfimprove import faults
from selfimprove.state import pid_alive, warehouse_root

PARTITION_COLUMNS = ("experiment", "round")
STAGING = "_staging"
DATA_FILE = "data.parquet"
DIGEST_KEY = b"selfimprove.digest"  # a stored table's content digest, in its Parquet schema metadata


def without_digest(meta: dict[bytes, bytes] | None) -> dict[bytes, bytes] | None:
    """Schema metadata without the stored digest key (None when nothing else is left)."""
    return {k: v for k, v in (meta or {}).items() if k != DIGEST_KEY} or None


def table_digest(table: pa.Table) -> str:
    """Content hash of a table (schema and values): the asset's DataVersion, and how a write knows the
    stored table is already this one. A digest key the table carries (read past `Warehouse.read`) is not
    part of its content. Tables are immutable, so a table's digest is made once while it lives (an asset's
    output is digested for its DataVersion and again by the write that stores it)."""
    known = _DIGESTS.get(id(table))
    if known is not None and known[0]() is table:
        return known[1]
    if table.schema.metadata and DIGEST_KEY in table.schema.metadata:
        content = table.replace_schema_metadata(without_digest(table.schema.metadata))
    else:
        content = table
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, content.schema) as writer:
        writer.write_table(content.combine_chunks())
    digest = hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()[:32]
    key = id(table)
    _DIGESTS[key] = (weakref.ref(table, lambda _: _DIGESTS.pop(key, None)), digest)
    return digest


_DIGESTS: dict[int, tuple[weakref.ref, str]] = {}  # id -> (the live table, its digest)


class TableCache:
    """Stage tables read from local files (`Warehouse.read`; shards are read once, on resumption, and not kept),
    by the file's identity (inode, size, mtime, ctime): a write replaces a file by a rename, which changes its
    identity, so an entry is never stale. Within `budget` bytes, least recently read first out. A round reads
    its inputs several times (generations by four steps): each file is decoded once per process while it is
    unchanged."""

    def __init__(self, budget: int) -> None:
        self.budget, self.tables = budget, OrderedDict[tuple, pa.Table]()

    def get(self, identity: tuple | None) -> pa.Table | None:
        if identity is None or (table := self.tables.get(identity)) is None:
            return None
        self.tables.move_to_end(identity)
        return table

    def put(self, identity: tuple | None, table: pa.Table) -> None:
        if identity is None or table.nbytes > self.budget:
            return
        self.tables[identity] = table
        while sum(t.nbytes for t in self.tables.values()) > self.budget:
            self.tables.popitem(last=False)

    def clear(self) -> None:
        self.tables.clear()


def _file_identity(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


TABLE_CACHE = TableCache(budget=256 << 20)

_STAGE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SHARD_RE = re.compile(r"shard-(\d+)\.parquet")
_LOCAL_PROTOCOLS = ("", "file", "local")


class WriteResult(NamedTuple):
    """Where a partition was written and how many rows it holds."""

    path: str
    num_rows: int


def _check(kind: str, value: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"invalid {kind} name {value!r}: must match {pattern.pattern}")
    return value


def _check_round(round: int | None) -> int | None:
    if round is not None and (isinstance(round, bool) or not isinstance(round, int) or round < 0):
        raise ValueError(f"round must be a non-negative int or None, got {round!r}")
    return round


def _partition(stage: str, experiment: str, round: int | None) -> str:
    """Relative folder of one partition, e.g. `generations/experiment=demo/round=0`."""
    _check("stage", stage, _STAGE_RE)
    _check("experiment", experiment, _NAME_RE)
    part = f"{stage}/experiment={experiment}"
    return part if _check_round(round) is None else f"{part}/round={round}"


def _strip_partition_columns(table: pa.Table, experiment: str, round: int | None) -> pa.Table:
    """Drop `experiment`/`round` columns that repeat the partition values; refuse ones that disagree.

    An experiment-level table (round=None) may keep a `round` column of its own (the report's rows).
    """
    expected: dict[str, Any] = {"experiment": experiment, "round": round}
    for name in PARTITION_COLUMNS:
        if name not in table.column_names or (name == "round" and round is None):
            continue
        values = set(table.column(name).to_pylist())
        if values - {expected[name]}:
            raise ValueError(
                f"column {name!r} holds {sorted(map(str, values))} but the partition is "
                f"{name}={expected[name]}; partition columns are stored in the path only"
            )
        table = table.drop_columns([name])
    return table


class Warehouse:
    """A Parquet warehouse rooted at a local folder or any fsspec URL (`memory://`, `s3://`, ...)."""

    def __init__(self, root: str | os.PathLike[str] | UPath | None = None, **storage_options: Any) -> None:
        root = warehouse_root() if root is None else root
        upath = UPath(root, **storage_options) if storage_options or not isinstance(root, UPath) else root
        self.local = upath.protocol in _LOCAL_PROTOCOLS
        if self.local:
            upath = UPath(os.path.abspath(os.path.expanduser(upath.path)))
        self.root: UPath = upath
        self.fs = upath.fs
        self._base = upath.path.rstrip("/")

    def __repr__(self) -> str:
        return f"Warehouse({str(self.root)!r})"

    # --- paths -------------------------------------------------------------------------------
    def _p(self, rel: str) -> str:
        return f"{self._base}/{rel}"

    def url(self, rel: str = "") -> str:
        """A path or URL for `rel` that DuckDB and fsspec both understand."""
        path = self._p(rel) if rel else self._base
        return path if self.local else f"{self.root.protocol}://{path.lstrip('/')}"

    def path(self, stage: str, experiment: str, round: int | None = None) -> UPath:
        """The data file of one partition (whether or not it exists)."""
        return self.root / _partition(stage, experiment, round) / DATA_FILE

    def exists(self, stage: str, experiment: str, round: int | None = None) -> bool:
        return bool(self.fs.exists(self._p(f"{_partition(stage, experiment, round)}/{DATA_FILE}")))

    def stages(self) -> list[str]:
        """Stage tables holding at least one data file (`_staging` and dot-folders are not tables)."""
        if not self.fs.isdir(self._base):
            return []
        names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self._base, detail=False))
        return [n for n in names if _STAGE_RE.fullmatch(n) and self.files(n)]

    def files(self, stage: str) -> list[str]:
        """Data files of one stage, as fs paths, sorted."""
        root = self._p(_check("stage", stage, _STAGE_RE))
        if not self.fs.isdir(root):
            return []
        return sorted(p for p in self.fs.find(root) if p.rsplit("/", 1)[-1] == DATA_FILE)

    def has_rounds(self, stage: str) -> bool | None:
        """True for a round stage, False for an experiment-level one, None when the stage is empty."""
        files = self.files(stage)
        return None if not files else "/round=" in files[0][len(self._p(stage)) :]

    # --- atomic file moves ---------------------------------------------------------------------
    def _write_file(self, table: pa.Table, final: str, tmp: str) -> None:
        """Write `table` to `tmp`, then move it over `final` in one step."""
        self._atomic(final, tmp, lambda f: pq.write_table(table, f, compression="zstd"))

    def _atomic(self, final: str, tmp: str, write: Callable[[Any], object]) -> None:
        """Call `write` on the open file `tmp`, then move it over `final` in one step; no temp file is left."""
        try:
            self.fs.makedirs(tmp.rsplit("/", 1)[0], exist_ok=True)
            with self.fs.open(tmp, "wb") as f:
                write(f)
            faults.point("warehouse:tmp")
            self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
            self._move(tmp, final)
        except OSError as e:  # a full disk, a read-only folder: say which file, keep the errno
            self._discard(tmp)
            raise OSError(e.errno, f"could not write {final} (via {tmp}): {e.strerror or e}") from e
        except Exception:
            self._discard(tmp)
            raise

    def _tmp(self, suffix: str) -> str:
        """A temp file under `_staging/_tmp`, named after this process; temp files of processes that are
        gone (killed mid-write) are removed first."""
        folder = self._p(f"{STAGING}/_tmp")
        if self.local and os.path.isdir(folder):
            for name in os.listdir(folder):
                pid = name.split("-", 1)[0]
                if pid.isdigit() and not pid_alive(int(pid)):
                    self._discard(f"{folder}/{name}")
        return f"{folder}/{os.getpid()}-{uuid.uuid4().hex}.{suffix}"

    def clear_staging(self, stage: str, experiment: str, round: int | None) -> None:
        """Delete every unfinished shard of a partition, of any run (called once its table is written)."""
        folder = self._p(f"{STAGING}/{_partition(stage, experiment, round)}")
        if self.fs.exists(folder):
            self.fs.rm(folder, recursive=True)

    def _discard(self, tmp: str) -> None:
        """Remove a temp file (or a link in its place), ignoring a second failure."""
        try:
            if os.path.lexists(tmp) if self.local else self.fs.exists(tmp):
                self.fs.rm(tmp)
        except OSError:
            pass

    def write_bytes(self, rel_path: str, data: bytes) -> str:
        """Atomically write a non-table file (a figure) at `<root>/<rel_path>`; returns its URL.

        `rel_path` must stay inside the root and start with `_` (e.g. `_artifacts/...`), so that it is never
        mistaken for a stage table.
        """
        if rel_path.startswith(("/", ".")) or ".." in rel_path.split("/") or not rel_path.startswith("_"):
            raise ValueError(f"rel_path must be a `_`-folder inside the warehouse, got {rel_path!r}")
        suffix = rel_path.rsplit(".", 1)[-1] if "." in rel_path else "bin"
        self._atomic(self._p(rel_path), self._tmp(suffix), lambda f: f.write(data))
        return self.url(rel_path)

    def _move(self, src: str, dst: str) -> None:
        if self.local:
            os.replace(src, dst)  # atomic on POSIX, replaces dst
        else:
            self.fs.mv(src, dst)

    def _read_file(self, path: str) -> pa.Table:
        try:
            with self.fs.open(path, "rb") as f:
                table = pq.ParquetFile(f).read()  # one file: ParquetFile skips read_table's dataset layer
        except pa.ArrowInvalid as e:
            raise ValueError(f"{path} is not a readable Parquet file ({e}); rerun the stage that writes it") from e
        return table.replace_schema_metadata(without_digest(table.schema.metadata))

    # --- tables ----------------------------------------------------------------------------------
    def write(self, stage: str, table: pa.Table, experiment: str, round: int | None = None) -> WriteResult:
        """Atomically write (or replace) one partition; returns its path and row count."""
        if not isinstance(table, pa.Table):
            raise TypeError(f"Warehouse.write expects a pyarrow.Table, got {type(table).__name__}")
        rel = _partition(stage, experiment, round)
        table = _strip_partition_columns(table, experiment, round)
        final = self._p(f"{rel}/{DATA_FILE}")
        digest = table_digest(table)
        if self._stored_digest(final) == digest:  # a cached rerun's identical table: nothing to write or check
            return WriteResult(self.url(f"{rel}/{DATA_FILE}"), table.num_rows)
        layout = self.has_rounds(stage)  # a walk of the stage's folders: only when something is written
        if layout is not None and layout != (round is not None):
            kind = "round" if layout else "experiment-level"
            raise ValueError(f"stage {stage!r} is a {kind} stage; got round={round!r}")
        meta = {**(table.schema.metadata or {}), DIGEST_KEY: digest.encode()}
        self._write_file(table.replace_schema_metadata(meta), final, self._tmp("parquet"))
        return WriteResult(self.url(f"{rel}/{DATA_FILE}"), table.num_rows)

    def _stored_digest(self, path: str) -> str | None:
        """The digest a stored table was written with (its footer only), None if absent or unreadable."""
        try:
            with self.fs.open(path, "rb") as f:
                meta = pq.read_schema(f).metadata or {}
        except (FileNotFoundError, pa.ArrowInvalid, OSError):
            return None
        return meta[DIGEST_KEY].decode() if DIGEST_KEY in meta else None

    def read(self, stage: str, experiment: str, round: int | None = None) -> pa.Table:
        """One partition, with `experiment` (string) and, for round stages, `round` (int64) added back."""
        rel = _partition(stage, experiment, round)
        path = self._p(f"{rel}/{DATA_FILE}")
        if not self.fs.exists(path):
            raise FileNotFoundError(f"no table {rel} in {self!r}")
        identity = _file_identity(path) if self.local else None  # a stage's table, not its shards (read once)
        if (table := TABLE_CACHE.get(identity)) is None:
            table = self._read_file(path)
            TABLE_CACHE.put(identity, table)
        table = table.append_column("experiment", pa.array([experiment] * table.num_rows, pa.string()))
        if round is not None:
            table = table.append_column("round", pa.array([round] * table.num_rows, pa.int64()))
        return table

    # --- shards ------------------------------------------------------------------------------
    def _shard_dir(self, stage: str, experiment: str, round: int | None, run_key: str) -> str:
        rel = _partition(stage, experiment, round)
        return self._p(f"{STAGING}/{rel}/{_check('run_key', run_key, _NAME_RE)}")

    def write_shard(
        self, stage: str, experiment: str, round: int | None, shard_index: int, table: pa.Table, run_key: str
    ) -> str:
        """Atomically write one shard of a long stage; rewriting an index replaces it."""
        if not isinstance(table, pa.Table):
            raise TypeError(f"write_shard expects a pyarrow.Table, got {type(table).__name__}")
        if isinstance(shard_index, bool) or not isinstance(shard_index, int) or shard_index < 0:
            raise ValueError(f"shard_index must be a non-negative int, got {shard_index!r}")
        folder = self._shard_dir(stage, experiment, round, run_key)
        final = f"{folder}/shard-{shard_index:05d}.parquet"
        table = _strip_partition_columns(table, experiment, round)
        self._write_file(table, final, f"{folder}/.tmp-{uuid.uuid4().hex}")
        return final

    def finished_shards(self, stage: str, experiment: str, round: int | None, run_key: str) -> list[int]:
        """Indices of the shards written so far, ascending."""
        folder = self._shard_dir(stage, experiment, round, run_key)
        if not self.fs.isdir(folder):
            return []
        names = (p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(folder, detail=False))
        return sorted(int(m.group(1)) for n in names if (m := _SHARD_RE.fullmatch(n)))

    def read_shards(self, stage: str, experiment: str, round: int | None, run_key: str) -> dict[int, pa.Table]:
        """Finished shards by index, ascending (temp files of unfinished shards are skipped)."""
        folder = self._shard_dir(stage, experiment, round, run_key)
        return {
            i: self._read_file(f"{folder}/shard-{i:05d}.parquet")
            for i in self.finished_shards(stage, experiment, round, run_key)
        }

    def clear_shards(self, stage: str, experiment: str, round: int | None, run_key: str) -> None:
        """Delete a run's shard folder (no error if absent)."""
        folder = self._shard_dir(stage, experiment, round, run_key)
        if self.fs.exists(folder):
            self.fs.rm(folder, recursive=True)
