"""Filter variants side by side: every filter setting a round was materialized with keeps its own rows.

`filtered` and `gap` hold one row set per setting (column `variant`, e.g. `quantile_alpha0.5`); the rows of
the latest materialization have `current = true` and are what the next stage reads. Rows of an earlier
setting stay (`current = false`) while they were computed from the same inputs (column `inputs`, a digest
of the round's generations and verifications), so SQL compares settings with `GROUP BY variant`.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from selfimprove import filters
from selfimprove.spec import FilterSpec

VARIANT_COLUMNS = ("variant", "current", "inputs")


def variant_key(f: FilterSpec, methods: list[str]) -> str:
    """A short, path-safe key of one filter setting: the kind and its parameter, then any other field the
    setting changes from the defaults, among the fields its kind reads (`ties` only for the per-prompt cuts,
    `ensemble` only when several verifiers' scores are combined), so one setting has one key."""
    kind = filters.FILTERS[f.kind]
    key = f.kind if kind.param is None else f"{f.kind}_{kind.param}{getattr(f, kind.param):.10g}"  # distinct values
    unused = {"kind"} | {x.param for x in filters.FILTERS.values() if x.param}
    if not kind.uses_ties:
        unused.add("ties")
    if len(methods) < 2 or kind.needs != "scores":
        unused.add("ensemble")
    for name, field in FilterSpec.model_fields.items():
        if name not in unused and getattr(f, name) != field.default:
            key += f"_{name}-{getattr(f, name)}"
    return key


def with_variant(table: pa.Table, variant: str, inputs: str) -> pa.Table:
    """`table` as the current row set of `variant`."""
    n = table.num_rows
    return (
        table.append_column("variant", pa.array([variant] * n, pa.string()))
        .append_column("current", pa.array([True] * n, pa.bool_()))
        .append_column("inputs", pa.array([inputs] * n, pa.string()))
    )


def merge_variants(previous: pa.Table | None, table: pa.Table, variant: str, inputs: str) -> pa.Table:
    """`table` as the current rows of `variant`, plus the rows of `previous`'s other variants made from the
    same `inputs` (kept even when `table` is empty: a setting that keeps nothing hides no other setting)."""
    new = with_variant(table, variant, inputs)
    if previous is None or not set(VARIANT_COLUMNS) <= set(previous.column_names):
        return new
    keep = pc.and_(pc.not_equal(previous.column("variant"), variant), pc.equal(previous.column("inputs"), inputs))
    old = previous.filter(keep)
    if old.num_rows == 0:
        return new
    old = old.set_column(old.schema.get_field_index("current"), "current", pa.array([False] * old.num_rows))
    return pa.concat_tables([new, old.select(new.column_names).cast(new.schema)])


def current(table: pa.Table) -> pa.Table:
    """The rows of the latest materialization (all rows of a table without variants)."""
    if "current" not in table.column_names:
        return table
    return table.filter(table.column("current")).drop_columns(list(VARIANT_COLUMNS))
