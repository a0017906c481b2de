"""The read-only SQL catalog and the `selfimprove sql` command."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pytest

from selfimprove.cli import main as cli_main
from selfimprove.resources.warehouse import Warehouse
from selfimprove.sql import (
    ReadOnlyError,
    SqlError,
    UnknownTableError,
    catalog,
    check_read_only,
    run_query,
)


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    """Two experiments x two rounds of `generations` (round r holds r+1 rows), plus a `report`."""
    wh = Warehouse(tmp_path / "wh")
    for exp in ("alpha", "beta"):
        for r in (0, 1):
            n = r + 1
            rows = pa.table(
                {"sample_id": [f"{exp}-{r}-{i}" for i in range(n)], "correct": [i % 2 == 0 for i in range(n)]}
            )
            wh.write("generations", rows, exp, r)
        wh.write("report", pa.table({"metric": ["gap"], "value": [0.25]}), exp)
    wh.write_shard("generations", "alpha", 2, 0, pa.table({"sample_id": ["x"], "correct": [True]}), "run")
    return wh


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_views_group_by_round(wh: Warehouse) -> None:
    out = run_query(wh.root, "SELECT round, count(*) AS n FROM generations GROUP BY round ORDER BY round")
    assert out.to_pylist() == [{"round": 0, "n": 2}, {"round": 1, "n": 4}]  # staged shard of round 2 unseen
    assert out.schema.field("round").type == pa.int64()
    by_exp = run_query(wh.root, "SELECT experiment, count(*) AS n FROM generations GROUP BY ALL ORDER BY 1")
    assert by_exp.to_pylist() == [{"experiment": "alpha", "n": 3}, {"experiment": "beta", "n": 3}]
    rep = run_query(str(wh.root), "SELECT * FROM report ORDER BY experiment")
    assert rep.column_names == ["metric", "value", "experiment"]
    assert rep.column("experiment").to_pylist() == ["alpha", "beta"]


def test_partition_columns_match_paths(wh: Warehouse) -> None:
    out = run_query(
        wh.root,
        "SELECT DISTINCT experiment, round, filename FROM read_parquet("
        f"'{wh.root}/generations/**/*.parquet', hive_partitioning=true, filename=true) ORDER BY 1, 2",
    )
    for row in out.to_pylist():
        assert f"/experiment={row['experiment']}/round={row['round']}/data.parquet" in row["filename"]
    assert len(out) == 4


def test_catalog_lists_stage_views_only(wh: Warehouse) -> None:
    con = catalog(wh)
    names = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()]
    assert sorted(names) == ["generations", "report"]
    with pytest.raises(Exception, match="lock"):
        con.execute("SET threads=1")  # configuration is locked


def test_experiment_names_stay_text(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    wh.write("gen", pa.table({"x": [1]}), "007", 0)
    assert run_query(tmp_path, "SELECT experiment FROM gen").column("experiment").to_pylist() == ["007"]


WRITES = {
    "INSERT": "INSERT INTO generations VALUES ('z', true)",
    "CREATE": "CREATE TABLE t AS SELECT 1",
    "CREATE VIEW": "CREATE VIEW v AS SELECT 1",
    "COPY": "COPY (SELECT 1) TO '{root}/generations/experiment=alpha/round=0/data.parquet'",
    "COPY new file": "COPY (SELECT 1 AS x) TO '{root}/generations/evil.parquet' (FORMAT parquet)",
    "EXPLAIN ANALYZE COPY": "EXPLAIN ANALYZE COPY (SELECT 1) TO '{root}/generations/evil.parquet'",
    "ATTACH": "ATTACH '{root}/generations/db.duckdb' AS x",
    "INSTALL": "INSTALL httpfs",
    "LOAD": "LOAD httpfs",
    "DROP": "DROP VIEW generations",
    "UPDATE": "UPDATE generations SET correct = false",
    "DELETE": "DELETE FROM generations",
    "SET": "SET threads = 1",
    "PRAGMA": "PRAGMA threads = 1",
    "EXPORT": "EXPORT DATABASE '{root}/export'",
    "CALL": "CALL checkpoint()",
    "second statement": "SELECT 1; COPY (SELECT 1) TO '{root}/x.csv'",
    "query()": "SELECT * FROM query('SELECT 1')",
    "checkpoint()": "SELECT * FROM checkpoint()",
}


@pytest.mark.parametrize("label", list(WRITES))
def test_write_statements_refused_and_nothing_changes(wh: Warehouse, label: str) -> None:
    root = Path(wh.root.path)
    sql = WRITES[label].format(root=root)
    before = _tree(root)
    with pytest.raises(ReadOnlyError, match="read-only: .*refused"):
        run_query(wh.root, sql)
    assert _tree(root) == before


def test_refusal_names_statement_type() -> None:
    with pytest.raises(ReadOnlyError, match=r"INSERT statement refused \(statement 2"):
        check_read_only("SELECT 1; INSERT INTO t VALUES (1)")
    with pytest.raises(ReadOnlyError, match="COPY statement"):
        check_read_only("copy (select 1) to 'x.csv'")
    with pytest.raises(ReadOnlyError, match=r"function write_log\(\)"):
        check_read_only("SELECT write_log('x')")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "FROM generations",
        "WITH a AS (SELECT 1 AS x) SELECT * FROM a",
        "DESCRIBE generations",
        "SHOW TABLES",
        "SUMMARIZE generations",
        "EXPLAIN SELECT * FROM generations",
        "EXPLAIN ANALYZE SELECT count(*) FROM generations",
        "PRAGMA table_info('generations')",
        "SELECT 1; SELECT 2",
        "SELECT query_text FROM (SELECT 'q' AS query_text)",
    ],
)
def test_read_statements_admitted(wh: Warehouse, sql: str) -> None:
    check_read_only(sql)
    run_query(wh.root, sql)


def test_files_outside_stage_views_are_unreadable(wh: Warehouse, tmp_path: Path) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    with pytest.raises(SqlError, match="Permission"):
        run_query(wh.root, f"SELECT * FROM read_csv('{outside}')")
    with pytest.raises(SqlError, match="Permission"):
        run_query(wh.root, f"SELECT * FROM read_parquet('{wh.root}/_staging/**/*.parquet')")
    local = pa.table({"a": [1]})  # noqa: F841  (python replacement scans are off)
    with pytest.raises(UnknownTableError):
        run_query(wh.root, "SELECT * FROM local")


def test_unknown_table_lists_views(wh: Warehouse) -> None:
    with pytest.raises(UnknownTableError, match="nope.*Available views: generations, report"):
        run_query(wh.root, "SELECT * FROM nope")


def test_empty_warehouse(tmp_path: Path) -> None:
    assert run_query(tmp_path / "none", "SELECT 42 AS x").to_pylist() == [{"x": 42}]
    with pytest.raises(UnknownTableError, match="none"):
        run_query(tmp_path / "none", "SELECT * FROM generations")


# --- CLI ----------------------------------------------------------------------------------------
Q = "SELECT round, count(*) AS n, any_value(experiment) AS e FROM generations WHERE experiment = 'beta' GROUP BY 1"


def test_cli_table(wh: Warehouse, capsys: pytest.CaptureFixture[str]) -> None:
    assert sql_main([Q + " ORDER BY 1", "--warehouse", str(wh.root)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "round  n  e",
        "-----  -  ----",
        "    0  1  beta",
        "    1  2  beta",
        "(2 rows)",
    ]


def test_cli_csv_and_json(wh: Warehouse, capsys: pytest.CaptureFixture[str]) -> None:
    assert sql_main([Q + " ORDER BY 1", "--warehouse", str(wh.root), "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows == [["round", "n", "e"], ["0", "1", "beta"], ["1", "2", "beta"]]
    assert sql_main([Q + " ORDER BY 1", "--warehouse", str(wh.root), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"round": 0, "n": 1, "e": "beta"}, {"round": 1, "n": 2, "e": "beta"}]


def test_cli_file_and_env(
    wh: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    query = tmp_path / "q.sql"
    query.write_text("SELECT count(*) AS n FROM report;\n")
    monkeypatch.setenv("SELFIMPROVE_WAREHOUSE", str(wh.root))
    assert sql_main(["--file", str(query), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 2}]


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["DROP VIEW generations"], "DROP statement refused"),
        (["SELECT * FROM nope"], "Available views: generations, report"),
        (["SELEC 1"], "Parser Error"),
        ([], "exactly one"),
        (["SELECT 1", "--format", "xml"], "invalid choice"),
    ],
)
def test_cli_errors_one_line_exit_2(
    wh: Warehouse, argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sql_main([*argv, "--warehouse", str(wh.root)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and fragment in captured.err
    assert "Traceback" not in captured.err


def sql_main(argv: list[str]) -> int:
    """`selfimprove sql ARGV` through the one CLI entry point."""
    return cli_main(["sql", *argv])


def test_one_cli_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"    {c} " in out or f"{{{c}" in out or f",{c}" in out for c in ("demo", "study", "sql"))
    assert cli_main(["nope"]) == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_cli_honours_selfimprove_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14.8: without --warehouse, `selfimprove sql` reads the warehouse the runs write ($SELFIMPROVE_HOME)."""
    from selfimprove.state import warehouse_root

    home = tmp_path / "home"
    monkeypatch.setenv("SELFIMPROVE_HOME", str(home))
    monkeypatch.delenv("SELFIMPROVE_WAREHOUSE", raising=False)
    monkeypatch.chdir(tmp_path)  # the old rule read ./.selfimprove/warehouse
    Warehouse(home / "warehouse").write("report", pa.table({"metric": ["gap"], "value": [0.5]}), "homed")
    assert warehouse_root() == str(home / "warehouse") and Warehouse().root.path == str(home / "warehouse")
    assert sql_main(["SELECT experiment, value FROM report", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"experiment": "homed", "value": 0.5}]


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_file_breaks_only_its_table(wh: Warehouse, damage: str) -> None:
    """Issue 14.7: one corrupt Parquet file: other queries still run; its table's error names the file."""
    bad = Path(wh.root.path) / "generations" / "experiment=beta" / "round=1" / "data.parquet"
    bad.write_bytes(bad.read_bytes()[:40] if damage == "truncated" else b"PAR1" + b"x" * 64 + b"PAR1")
    assert run_query(wh, "SELECT 1 AS one").to_pylist() == [{"one": 1}]
    assert run_query(wh, "SELECT count(*) AS n FROM report").to_pylist() == [{"n": 2}]
    with pytest.raises(SqlError) as info:
        run_query(wh, "SELECT count(*) FROM generations")
    assert str(bad) in str(info.value) and "cannot be read" in str(info.value)
