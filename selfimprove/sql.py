"""Read-only SQL over the warehouse (the engine of `selfimprove sql "SELECT ..."`).

`catalog` builds an in-memory DuckDB with one view per stage over the Parquet globs, so no process
holds a lock on a catalog file while runs write. Two fences keep queries read-only:

- `check_read_only` admits only read statements, by DuckDB's own parser (a read-only DuckDB still
  lets `COPY ... TO` write files), and refuses the few functions that act from inside a SELECT.
- the connection may open files under the stage folders only (`enable_external_access=false` with
  `allowed_directories`), extensions are not auto-installed, and the configuration is locked.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from selfimprove.resources.warehouse import Warehouse

Root = str | os.PathLike[str] | Warehouse


class SqlError(Exception):
    """A query that cannot run; the message is meant for the user."""


class ReadOnlyError(SqlError):
    """A statement or function that could change state or escape the warehouse."""


class UnknownTableError(SqlError):
    """A query names a table that is not a stage view."""


_READ_TYPES = {duckdb.StatementType.SELECT}  # DESCRIBE, SHOW, SUMMARIZE, FROM, VALUES parse to SELECT
_READ_PRAGMAS = {
    "show", "show_tables", "show_tables_expanded", "show_databases", "table_info", "version",
    "platform", "database_list", "database_size", "storage_info", "functions", "collations", "user_agent",
}  # fmt: skip
# Functions that act from inside a SELECT: run SQL text we cannot check, change state, or scan raw pointers.
DENIED_FUNCTIONS = frozenset({
    "query", "json_execute_serialized_sql", "checkpoint", "force_checkpoint",
    "enable_logging", "disable_logging", "truncate_duckdb_logs", "write_log",
    "enable_profiling", "disable_profiling", "setval", "nextval",
    "create_external_resource", "register_external_resource", "register_external_resource_type",
    "deregister_external_resource", "destroy_external_resource",
    "arrow_scan", "arrow_scan_dumb", "python_arrow_scan", "pandas_scan", "python_map_function",
})  # fmt: skip
_EXPLAIN_RE = re.compile(r"\s*explain\s+(?:analy[sz]e\s+)?", re.IGNORECASE)
_OPTIONS_RE = re.compile(r"\([^)]*\)\s*")  # EXPLAIN (FORMAT json) ...
_PRAGMA_RE = re.compile(r"\s*pragma\s+(\w+)\s*(?:\(|;|$)", re.IGNORECASE)
_ALLOWED = "only SELECT, EXPLAIN, DESCRIBE, SHOW, SUMMARIZE and read PRAGMAs are allowed"


def _statements(sql: str) -> list[duckdb.Statement]:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise SqlError(str(e).strip()) from None
    if not statements:
        raise SqlError("no SQL statement given")
    return statements


def _called_functions(sql: str) -> set[str]:
    """Lower-cased names directly followed by `(`, per DuckDB's tokenizer (comments skipped)."""
    tokens = duckdb.tokenize(sql)
    ends = [start for start, _ in tokens[1:]] + [len(sql)]
    words = [
        (kind, sql[start:end].strip())
        for (start, kind), end in zip(tokens, ends, strict=True)
        if kind != duckdb.token_type.comment
    ]
    names = set()
    for (kind, text), (_, following) in zip(words, words[1:], strict=False):
        if kind in (duckdb.token_type.identifier, duckdb.token_type.keyword) and following.startswith("("):
            names.add(text.strip('"').rsplit(".", 1)[-1].strip('"').lower())
    return names


def _explained(text: str) -> duckdb.Statement | None:
    """The one statement an EXPLAIN wraps, or None when it cannot be told."""
    prefix = _EXPLAIN_RE.match(text)
    if not prefix:
        return None
    rest = text[prefix.end() :]
    options = _OPTIONS_RE.match(rest)
    for candidate in ([rest[options.end() :]] if options else []) + [rest]:
        try:
            statements = duckdb.extract_statements(candidate)
        except duckdb.Error:
            continue
        if len(statements) == 1:
            return statements[0]
    return None


def _check_statement(stmt: duckdb.Statement, number: int) -> None:
    kind = stmt.type
    text = stmt.query.strip()
    if kind in _READ_TYPES:
        return
    if kind == duckdb.StatementType.EXPLAIN:  # EXPLAIN ANALYZE runs its statement: check that one
        inner = _explained(text)
        if inner is not None:
            _check_statement(inner, number)
            return
    if kind == duckdb.StatementType.PRAGMA:
        match = _PRAGMA_RE.match(text)
        if match and match.group(1).lower() in _READ_PRAGMAS:
            return
    short = text if len(text) <= 60 else text[:57] + "..."
    raise ReadOnlyError(f"read-only: {kind.name} statement refused (statement {number}: {short!r}); {_ALLOWED}")


def check_read_only(sql: str) -> list[duckdb.Statement]:
    """Parse `sql` with DuckDB; raise ReadOnlyError unless every statement only reads."""
    statements = _statements(sql)
    for number, stmt in enumerate(statements, 1):
        _check_statement(stmt, number)
    denied = sorted(_called_functions(sql) & DENIED_FUNCTIONS)
    if denied:
        raise ReadOnlyError(f"read-only: function {denied[0]}() refused; it can change state or run unchecked SQL")
    return statements


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def catalog(root: Root, broken: dict[str, str] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per stage over every experiment and round.

    Views: `SELECT * FROM read_parquet('<root>/<stage>/**/*.parquet', hive_partitioning=true, ...)`,
    with `experiment` VARCHAR and `round` BIGINT. `_staging` is neither a view nor readable. A stage
    whose files cannot be read (a corrupt Parquet file) gets no view; `broken`, if given, receives
    DuckDB's message for it (which names the file), and every other view still works.
    """
    wh = root if isinstance(root, Warehouse) else Warehouse(root)
    con = duckdb.connect(":memory:")
    if not wh.local:
        con.register_filesystem(wh.fs)
    allowed: list[str] = []
    for stage in wh.stages():
        base = wh.url(stage)
        hive_types = "{'experiment': VARCHAR" + (", 'round': BIGINT}" if wh.has_rounds(stage) else "}")
        try:
            con.execute(
                f"CREATE VIEW {_quote(stage)} AS SELECT * FROM read_parquet({_literal(base + '/**/*.parquet')}, "
                f"hive_partitioning=true, union_by_name=true, hive_types={hive_types})"
            )
        except duckdb.Error as e:
            if broken is not None:
                broken[stage] = str(e).strip().splitlines()[0]
            continue
        allowed.append(base + "/")
        if not wh.local:  # fsspec globs may come back as proto:///path
            proto, _, rest = base.partition("://")
            allowed.append(f"{proto}:///{rest}/")
    con.execute(f"SET allowed_directories=[{', '.join(map(_literal, allowed))}]")
    for setting in (
        "enable_external_access=false",
        "autoinstall_known_extensions=false",
        "python_enable_replacements=false",
        "lock_configuration=true",
    ):
        con.execute(f"SET {setting}")
    return con


def views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The stage views of a catalog connection."""
    rows = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def run_query(root: Root, sql: str) -> pa.Table:
    """Check `sql` is read-only, run it over the warehouse views, return the last statement's result."""
    statements = check_read_only(sql)
    con = None
    broken: dict[str, str] = {}
    try:
        con = catalog(root, broken)
        for stmt in statements[:-1]:
            con.execute(stmt.query).fetchall()  # earlier results are dropped, errors still raise
        return con.sql(statements[-1].query).to_arrow_table()
    except duckdb.CatalogException as e:
        message = str(e).strip()
        unreadable = [stage for stage in broken if f"Table with name {stage} does not exist" in message]
        if unreadable:
            stage = unreadable[0]
            raise SqlError(
                f"table {stage} cannot be read: {broken[stage]}. Rerun the stage that wrote that file "
                "(or delete it); the other tables are unaffected"
            ) from None
        if "Table with name" in message:
            names = ", ".join(views(con) if con is not None else []) or "none (no tables yet)"
            raise UnknownTableError(f"{message.splitlines()[0]} Available views: {names}") from None
        raise SqlError(message.splitlines()[0]) from None
    except duckdb.PermissionException as e:
        raise SqlError(f"{str(e).strip()} (queries may read the warehouse views only)") from None
    except duckdb.Error as e:
        raise SqlError(" ".join(str(e).split())) from None
    finally:
        if con is not None:
            con.close()


# --- output formats ---------------------------------------------------------------------------
_MAX_CELL = 80


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    text = json.dumps(value, default=str) if isinstance(value, (list, dict)) else str(value)
    text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def format_table(table: pa.Table) -> str:
    """Aligned text: numbers right-aligned, long cells cut at 80 characters, a row count at the end."""
    names = table.column_names
    cols = [[_cell(v) for v in table.column(i).to_pylist()] for i in range(table.num_columns)]
    types = table.schema.types
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) for t in types]
    widths = [max([len(n), *map(len, c)]) for n, c in zip(names, cols, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    rows = [line(names), line(["-" * w for w in widths])]
    rows += [line([c[r] for c in cols]) for r in range(table.num_rows)]
    rows.append(f"({table.num_rows} row{'' if table.num_rows == 1 else 's'})")
    return "\n".join(rows) + "\n"


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    return json.dumps(value, default=str) if isinstance(value, (list, dict)) else value


def format_csv(table: pa.Table) -> str:
    """CSV with a header; NULL is an empty field, nested values are JSON."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        writer.writerow([_csv_cell(v) for v in row.values()])
    return out.getvalue()


def format_json(table: pa.Table) -> str:
    """A JSON array of row objects."""
    return json.dumps(table.to_pylist(), default=str, ensure_ascii=False) + "\n"


FORMATS = {"table": format_table, "csv": format_csv, "json": format_json}
