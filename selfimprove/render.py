"""Plain-text rendering shared by asset metadata, the CLI and the docs: numbers, CIs and markdown tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Row = Mapping[str, Any]


def num(v: Any) -> float:
    """A table value as a float; None (a missing value) becomes NaN."""
    return math.nan if v is None else float(v)


def cell(v: Any, float_format: str = ".3f", max_chars: int | None = None) -> str:
    """One markdown cell: None is empty, floats rounded, newlines and pipes escaped, long text cut."""
    if v is None:
        return ""
    text = format(v, float_format) if isinstance(v, float) else str(v)
    text = text.replace("\n", "⏎").replace("|", "\\|")
    return text if max_chars is None else text[:max_chars]


def md_table(
    rows: Sequence[Row], columns: Sequence[str], *, float_format: str = ".3f", max_chars: int | None = None
) -> str:
    """A markdown table of `rows` over `columns` (a missing key is an empty cell)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(cell(r.get(c), float_format, max_chars) for c in columns) + " |")
    return "\n".join(lines)


def md_transposed(rows: Sequence[Row], columns: Sequence[str], by: str, *, float_format: str = ".3f") -> str:
    """A wide table turned on its side, readable in a narrow panel: one line per column, one column per row
    (headed `<by> <value>`)."""
    head = ["", *(f"{by} {r.get(by)}" for r in rows)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in columns:
        if c != by:
            lines.append("| " + " | ".join([c, *(cell(r.get(c), float_format) for r in rows)]) + " |")
    return "\n".join(lines)


def ci(row: Row, key: str) -> str:
    """`value [lo, hi]` of `key` and its `key_lo` / `key_hi` bounds."""
    return f"{num(row.get(key)):.3f} [{num(row.get(key + '_lo')):.3f}, {num(row.get(key + '_hi')):.3f}]"
