"""The report asset: one row per round (accuracy, gap, held-out accuracy, pass@k)."""

import dagster as dg
import numpy as np
import pyarrow as pa

from selfimprove import metrics
from selfimprove.assets.common import Experiment, output
from selfimprove.assets.evals import accuracy
from selfimprove.assets.gaps import headline

CODE_VERSION = "1"


def report_rows(rounds: int, gaps: list[pa.Table], evals: list[pa.Table], generations: list[pa.Table]) -> pa.Table:
    """R rounds of gaps and generations, and R + 1 evals (the last one after the final round)."""
    rows = []
    for r in range(rounds + 1):
        row: dict[str, float | int | None] = {
            "round": r,
            "eval_greedy": accuracy(evals[r], "greedy"),
            "eval_sampled": accuracy(evals[r], "sampled"),
        }
        if r < rounds:
            row.update(headline(gaps[r]))
            g = generations[r]
            curve = metrics.pass_at_k_curve(
                g.column("prompt_id").to_pylist(), np.asarray(g.column("correct").to_pylist())
            )
            row["pass_at_1"] = curve[1]
            row["pass_at_n"] = curve[max(curve)]
        rows.append(row)
    return pa.Table.from_pylist(rows)


def markdown(table: pa.Table) -> str:
    cols = table.column_names
    lines = ["| " + " | ".join(cols) + " |", "|" + "---:|" * len(cols)]
    for r in table.to_pylist():
        lines.append(
            "| "
            + " | ".join("" if r[c] is None else f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols)
            + " |"
        )
    return "\n".join(lines)


def report_asset(exp: Experiment) -> dg.AssetsDefinition:
    rounds = exp.spec.rounds
    ins = {f"gap_{r}": dg.AssetIn(exp.key("gap", r)) for r in range(rounds)}
    ins |= {f"generations_{r}": dg.AssetIn(exp.key("generations", r)) for r in range(rounds)}
    ins |= {f"eval_{r}": dg.AssetIn(exp.key("eval", r)) for r in range(rounds + 1)}

    @dg.asset(
        key=exp.key("report"),
        ins=ins,
        group_name=exp.group(),
        kinds={"parquet"},
        code_version=CODE_VERSION,
        description="Per-round table: sampling and filtered accuracy, gap with CI, held-out accuracy, pass@k.",
    )
    def report(**tables: pa.Table) -> dg.Output[pa.Table]:
        table = report_rows(
            rounds,
            [tables[f"gap_{r}"] for r in range(rounds)],
            [tables[f"eval_{r}"] for r in range(rounds + 1)],
            [tables[f"generations_{r}"] for r in range(rounds)],
        )
        out = output(table)
        out.metadata["per_round"] = dg.MetadataValue.md(markdown(table))
        return out

    return report
