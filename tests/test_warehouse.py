"""Warehouse layout, atomic writes and shards."""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selfimprove.resources.warehouse import Warehouse
from selfimprove.sql import run_query


def _t(**cols: list) -> pa.Table:
    return pa.table(cols)


def test_layout_and_partition_columns(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    res = wh.write("generations", _t(sample_id=["a", "b"], score=[1.0, 0.5]), "demo", 2)
    assert res.num_rows == 2
    assert res.path == str(tmp_path / "generations" / "experiment=demo" / "round=2" / "data.parquet")
    assert Path(res.path).is_file()
    assert str(wh.path("generations", "demo", 2)) == res.path
    # partition columns live in the path only
    assert pq.read_schema(res.path).names == ["sample_id", "score"]
    back = wh.read("generations", "demo", 2)
    assert back.column_names == ["sample_id", "score", "experiment", "round"]
    assert back.column("experiment").to_pylist() == ["demo", "demo"]
    assert back.column("round").to_pylist() == [2, 2]
    assert back.schema.field("round").type == pa.int64()

    rep = wh.write("report", _t(metric=["gap"], value=[0.1]), "demo")
    assert rep.path.endswith("report/experiment=demo/data.parquet")
    assert wh.read("report", "demo").to_pylist() == [{"metric": "gap", "value": 0.1, "experiment": "demo"}]
    assert wh.exists("report", "demo") and not wh.exists("report", "other")
    assert wh.exists("generations", "demo", 2) and not wh.exists("generations", "demo", 3)
    assert wh.stages() == ["generations", "report"]


def test_read_table_can_be_written_back(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    wh.write("gen", _t(x=[1]), "e", 0)
    wh.write("gen", wh.read("gen", "e", 0), "e", 0)  # matching partition columns are dropped
    assert wh.read("gen", "e", 0).to_pylist() == [{"x": 1, "experiment": "e", "round": 0}]
    with pytest.raises(ValueError, match="partition"):
        wh.write("gen", _t(x=[1], round=[5]), "e", 0)


def test_an_identical_table_is_not_written_again(tmp_path: Path) -> None:
    """A cached rerun hands the IO manager the table already stored: no second write (20-40 ms and an
    fsync each here); a changed table is written, and readers never see the digest kept in the footer."""
    wh = Warehouse(tmp_path)
    table = _t(sample_id=["a", "b"], score=[1.0, 0.5])
    path = Path(wh.write("generations", table, "demo", 0).path)
    first = path.stat().st_ino
    wh.write("generations", wh.read("generations", "demo", 0), "demo", 0)  # read back, as the IO manager loads it
    assert path.stat().st_ino == first
    back = wh.read("generations", "demo", 0)
    assert back.schema.metadata is None and back.select(["sample_id", "score"]).equals(table)
    raw = pq.ParquetFile(path).read()  # read past Warehouse.read: it carries the digest key, which is not content
    wh.write("generations", raw, "demo", 0)
    assert path.stat().st_ino == first
    wh.write("generations", _t(sample_id=["a", "b"], score=[1.0, 0.25]), "demo", 0)
    assert path.stat().st_ino != first
    assert wh.read("generations", "demo", 0).column("score").to_pylist() == [1.0, 0.25]


def test_invalid_names_and_mixed_layout(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    for stage, exp in [("_staging", "e"), ("a/b", "e"), ("gen", "x=1"), ("gen", "../up"), ("gen", "")]:
        with pytest.raises(ValueError):
            wh.write(stage, _t(x=[1]), exp, 0)
    with pytest.raises(ValueError):
        wh.write("gen", _t(x=[1]), "e", -1)
    wh.write("gen", _t(x=[1]), "e", 0)
    with pytest.raises(ValueError, match="round stage"):
        wh.write("gen", _t(x=[1]), "e2")
    with pytest.raises(TypeError):
        wh.write("gen", [{"x": 1}], "e", 0)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        wh.read("gen", "e", 9)


class _Crash(BaseException):
    """Stands in for the process dying: not an Exception, so no cleanup runs."""


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_crash_between_temp_write_and_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wh = Warehouse(tmp_path)
    wh.write("gen", _t(x=[1, 2]), "e", 0)
    before = _tree(tmp_path / "gen")

    def crash(src: str, dst: str) -> None:
        raise _Crash

    monkeypatch.setattr(wh, "_move", crash)
    with pytest.raises(_Crash):
        wh.write("gen", _t(x=[7, 8, 9]), "e", 0)
    # the temp file is left behind, but only in staging
    leftovers = list((tmp_path / "_staging").rglob("*.parquet"))
    assert len(leftovers) == 1 and pq.read_table(leftovers[0]).num_rows == 3
    assert _tree(tmp_path / "gen") == before
    assert wh.read("gen", "e", 0).column("x").to_pylist() == [1, 2]
    assert run_query(tmp_path, "SELECT x FROM gen ORDER BY x").column("x").to_pylist() == [1, 2]
    # a raw glob over the table tree sees only the committed file
    files = duckdb.sql(f"SELECT file FROM glob('{tmp_path}/gen/**/*.parquet')").fetchall()
    assert [f for (f,) in files] == [str(tmp_path / "gen/experiment=e/round=0/data.parquet")]


def test_failed_write_cleans_temp_and_replace_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wh = Warehouse(tmp_path)
    wh.write("gen", _t(x=[1]), "e", 0)

    def fail(src: str, dst: str) -> None:
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(wh, "_move", fail)
        with pytest.raises(OSError, match="disk full"):
            wh.write("gen", _t(x=[2]), "e", 0)
    assert not list((tmp_path / "_staging").rglob("*.parquet"))
    wh.write("gen", _t(x=[3, 4]), "e", 0)
    assert wh.read("gen", "e", 0).column("x").to_pylist() == [3, 4]
    assert [p.name for p in (tmp_path / "gen/experiment=e/round=0").iterdir()] == ["data.parquet"]


def test_shards_order_resume_and_clear(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    key = ("gen", "e", 1)
    wh.write_shard(*key, 2, _t(i=[4, 5]), run_key="run1")
    wh.write_shard(*key, 0, _t(i=[0, 1]), run_key="run1")
    wh.write_shard(*key, 1, _t(i=[9]), run_key="run1")
    wh.write_shard(*key, 1, _t(i=[2, 3]), run_key="run1")  # a retried shard replaces, never duplicates
    wh.write_shard(*key, 0, _t(i=[100]), run_key="other")
    folder = tmp_path / "_staging/gen/experiment=e/round=1/run1"
    (folder / ".tmp-halfwritten").write_bytes(b"PAR1 partial")  # an unfinished shard
    assert sorted(p.name for p in folder.iterdir()) == [
        ".tmp-halfwritten",
        "shard-00000.parquet",
        "shard-00001.parquet",
        "shard-00002.parquet",
    ]
    assert wh.finished_shards(*key, "run1") == [0, 1, 2]
    shards = wh.read_shards(*key, "run1")
    assert list(shards) == [0, 1, 2]
    assert shards[1].column("i").to_pylist() == [2, 3]
    assert not wh.exists(*key)  # shards are not a table until finalized
    assert "gen" not in wh.stages()

    wh.clear_shards(*key, "run1")
    assert not folder.exists()
    assert wh.read_shards(*key, "run1") == {}
    assert wh.finished_shards(*key, "other") == [0]  # other runs untouched
    wh.clear_shards(*key, "other")
    wh.clear_shards(*key, "other")  # idempotent
    assert wh.read_shards(*key, "other") == {}


def test_write_bytes_is_atomic_and_stays_out_of_tables(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    url = wh.write_bytes("_artifacts/plots/experiment=e/a.png", b"first")
    assert url == str(tmp_path / "_artifacts/plots/experiment=e/a.png")
    wh.write_bytes("_artifacts/plots/experiment=e/a.png", b"second")  # replaces in one step
    assert (tmp_path / "_artifacts/plots/experiment=e/a.png").read_bytes() == b"second"
    assert not [p for p in (tmp_path / "_staging").rglob("*") if p.is_file()]  # no temp file left
    assert wh.stages() == []
    for bad in ("/abs.png", "../up.png", "_artifacts/../x.png", "gen/experiment=e/data.parquet"):
        with pytest.raises(ValueError, match="rel_path"):
            wh.write_bytes(bad, b"x")


def test_memory_root_round_trip() -> None:
    root = f"memory://wh-{uuid.uuid4().hex}"
    wh = Warehouse(root)
    try:
        res = wh.write("gen", _t(x=[1, 2]), "e", 0)
        assert res.path == f"{root}/gen/experiment=e/round=0/data.parquet"
        wh.write_shard("gen", "e", 1, 0, _t(x=[3]), run_key="r")
        wh.write("gen", pa.concat_tables(wh.read_shards("gen", "e", 1, "r").values()), "e", 1)
        assert wh.read("gen", "e", 1).to_pylist() == [{"x": 3, "experiment": "e", "round": 1}]
        assert wh.stages() == ["gen"]
        out = run_query(root, "SELECT round, sum(x) AS s FROM gen GROUP BY round ORDER BY round")
        assert out.to_pylist() == [{"round": 0, "s": 3}, {"round": 1, "s": 3}]
    finally:
        wh.fs.rm(wh.root.path, recursive=True)


def test_relative_root_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    wh = Warehouse("wh")
    assert wh.write("gen", _t(x=[1]), "e", 0).path == os.path.join(tmp_path, "wh/gen/experiment=e/round=0/data.parquet")


def test_full_disk_error_names_the_file_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14.9: a full disk (the temp file is a link to /dev/full, which answers ENOSPC) names the path."""
    wh = Warehouse(tmp_path / "wh")
    wh.write("generations", pa.table({"x": [1]}), "demo", 0)
    fixed = uuid.UUID(int=7)
    monkeypatch.setattr(uuid, "uuid4", lambda: fixed)
    tmp = tmp_path / "wh" / "_staging" / "_tmp" / f"{os.getpid()}-{fixed.hex}.parquet"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.symlink_to("/dev/full")
    with pytest.raises(OSError) as info:
        wh.write("generations", pa.table({"x": list(range(100_000))}), "demo", 0)
    assert info.value.errno == errno.ENOSPC
    assert str(tmp_path / "wh" / "generations" / "experiment=demo" / "round=0" / "data.parquet") in str(info.value)
    assert not os.path.lexists(tmp)  # no temp file left
    assert wh.read("generations", "demo", 0).column("x").to_pylist() == [1]  # the old table is intact


def test_corrupt_file_is_named_on_read(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh")
    wh.write("report", pa.table({"x": [1]}), "demo")
    path = tmp_path / "wh" / "report" / "experiment=demo" / "data.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match=f"{path} is not a readable Parquet file"):
        wh.read("report", "demo")


def test_temp_files_of_dead_processes_are_removed(tmp_path: Path) -> None:
    """A process killed mid-write leaves `_staging/_tmp/<pid>-*`; the next write removes it (a live one stays)."""
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    wh = Warehouse(tmp_path / "wh")
    folder = tmp_path / "wh" / "_staging" / "_tmp"
    folder.mkdir(parents=True)
    (folder / f"{gone.pid}-dead.parquet").write_bytes(b"half")
    (folder / f"{os.getpid()}-mine.parquet").write_bytes(b"in flight")
    wh.write("report", pa.table({"x": [1]}), "demo")
    assert sorted(p.name for p in folder.iterdir()) == [f"{os.getpid()}-mine.parquet"]


def test_lora_temp_folders_of_dead_processes_are_removed(tmp_path: Path) -> None:
    import subprocess

    from selfimprove.resources.trainer import remove_stale_temp

    gone = subprocess.Popen(["true"])
    gone.wait()
    dead, live = tmp_path / f".abc.{gone.pid}.x1", tmp_path / f".abc.{os.getpid()}.x2"
    for d in (dead, live):
        (d / "adapter").mkdir(parents=True)
    remove_stale_temp(tmp_path)
    assert not dead.exists() and live.exists()


def test_a_table_is_digested_once_while_it_lives(monkeypatch: pytest.MonkeyPatch) -> None:
    """An asset's output is digested for its DataVersion and again by the write that stores it: the second
    time is free. Equal tables still get equal digests, and a table that is gone leaves nothing behind."""
    import gc

    from selfimprove.resources import warehouse

    made = []
    sha256 = warehouse.hashlib.sha256
    monkeypatch.setattr(warehouse.hashlib, "sha256", lambda data: made.append(1) or sha256(data))
    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    first = warehouse.table_digest(table)
    assert warehouse.table_digest(table) == first and len(made) == 1
    twin = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    assert warehouse.table_digest(twin) == first and len(made) == 2
    assert warehouse.table_digest(twin.slice(0, 2)) != first
    key = id(twin)
    del twin
    gc.collect()
    assert key not in warehouse._DIGESTS


def test_an_unchanged_file_is_decoded_once_and_a_replaced_one_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads of a file nobody replaced share one decoded table; every write (a rename) is read anew, even one
    of the same size in the same instant, and so is a file another process rewrote in place."""
    from selfimprove.resources import warehouse

    decoded = []
    parquet_file = warehouse.pq.ParquetFile
    monkeypatch.setattr(warehouse.pq, "ParquetFile", lambda f: decoded.append(1) or parquet_file(f))
    wh = Warehouse(tmp_path / "wh")
    wh.write("report", pa.table({"x": [1, 2]}), "demo")
    first = wh.read("report", "demo")
    assert wh.read("report", "demo").equals(first) and len(decoded) == 1
    wh.write("report", pa.table({"x": [3, 4]}), "demo")  # same schema and size
    assert wh.read("report", "demo").column("x").to_pylist() == [3, 4] and len(decoded) == 2
    path = tmp_path / "wh" / "report" / "experiment=demo" / "data.parquet"
    pq.write_table(pa.table({"x": [5, 6]}), path)  # in place, as another writer might
    assert wh.read("report", "demo").column("x").to_pylist() == [5, 6] and len(decoded) == 3
    kept = len(warehouse.TABLE_CACHE.tables)
    wh.write_shard("generations", "demo", 0, 0, pa.table({"x": [7]}), "run1")
    assert wh.read_shards("generations", "demo", 0, "run1")[0].column("x").to_pylist() == [7]
    assert len(warehouse.TABLE_CACHE.tables) == kept  # a shard is read once, on resumption: not kept


def test_table_cache_keeps_the_recently_read_within_its_budget() -> None:
    from selfimprove.resources.warehouse import TableCache

    tables = {name: pa.table({"x": pa.array(range(100), pa.int64())}) for name in "abc"}  # 800 bytes each
    cache = TableCache(budget=2000)
    cache.put(("a",), tables["a"])
    cache.put(("b",), tables["b"])
    assert cache.get(("a",)) is tables["a"]  # a is now the most recent
    cache.put(("c",), tables["c"])
    assert cache.get(("b",)) is None and cache.get(("a",)) is tables["a"] and cache.get(("c",)) is tables["c"]
    cache.put(("big",), pa.table({"x": pa.array(range(1000), pa.int64())}))  # over the budget alone: not kept
    assert cache.get(("big",)) is None and cache.get(("c",)) is tables["c"]
    assert cache.get(None) is None
