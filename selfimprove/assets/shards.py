"""Resumable stages: fixed shards of prompts, each written atomically once finished, and the rows a
rerun may reuse (the stage's previous table plus the finished shards of an interrupted run).

Generation, eval and verification shard the same way: consecutive groups of `shard_prompts` distinct
prompts, in the order the prompts first appear. A shard is the unit of resumption (and of work a
scheduler may hand out); its rows are keyed, so a shard computed twice gives the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyarrow as pa

from selfimprove import faults
from selfimprove.resources.warehouse import Warehouse

SaveShard = Callable[[int, pa.Table], None]


def shard_by_prompt(prompt_ids: Sequence[str], shard_prompts: int) -> list[list[int]]:
    """Positions of the items of each shard: `shard_prompts` distinct prompts per shard, in first-seen order."""
    if shard_prompts < 1:
        raise ValueError(f"shard_prompts must be >= 1, got {shard_prompts}")
    order: dict[str, int] = {}
    for pid in prompt_ids:
        order.setdefault(pid, len(order))
    shards: list[list[int]] = [[] for _ in range((len(order) + shard_prompts - 1) // shard_prompts)]
    for j, pid in enumerate(prompt_ids):
        shards[order[pid] // shard_prompts].append(j)
    return shards


def staged_run(
    warehouse: Warehouse, stage: str, experiment: str, round: int, run_key: str
) -> tuple[pa.Table | None, SaveShard]:
    """Rows reusable for this stage (the previous table plus finished shards) and a shard writer."""
    cached = previous_rows(warehouse, stage, experiment, round, run_key)

    def save(shard: int, table: pa.Table) -> None:
        warehouse.write_shard(stage, experiment, round, shard, table, run_key)
        faults.point(f"shard:{stage}")

    return cached, save


def previous_rows(
    warehouse: Warehouse, stage: str, experiment: str, round: int, run_key: str | None = None
) -> pa.Table | None:
    """The stage's previous table (partition columns dropped) plus, with a run key, its finished shards."""
    tables = []
    if warehouse.exists(stage, experiment, round):
        tables.append(warehouse.read(stage, experiment, round).drop_columns(["experiment", "round"]))
    if run_key is not None:
        tables += list(warehouse.read_shards(stage, experiment, round, run_key).values())
    return pa.concat_tables(tables, promote_options="default") if tables else None
