"""Sampling and grading with a row-level cache and resumable shards (generations and evals share it).

Every row carries a cache key: a hash of the weight digest, the engine, the exact prompt text, the
sampling parameters, the sample index, the seed and the stage's code version. A rerun reuses every
row whose key it finds (in the previous table or in finished shards of an interrupted run) and
computes only what is missing, so raising N computes only the new samples and a new checkpoint
reuses nothing. Prompts are processed in fixed shards, each written atomically once finished.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pyarrow as pa

from selfimprove.assets.common import digest
from selfimprove.resources.engine import Engine, Sampling
from selfimprove.resources.warehouse import Warehouse
from selfimprove.tasks.base import Problem, Task, grade_many

log = logging.getLogger(__name__)

Row = dict[str, Any]


def task_sampling(task: Task, sampling: Sampling) -> Sampling:
    """The sampling parameters with the task's stop strings (few-shot prompts must stop at the next shot)."""
    return replace(sampling, stop=tuple(getattr(task, "stop", ()) or ()))


def problems_of(prompts: pa.Table, split: str) -> list[tuple[Problem, str]]:
    """(problem, generation prompt text) of one split, in table order."""
    return [
        (Problem(r["prompt_id"], r["question"], r["reference"]), r["prompt"])
        for r in prompts.to_pylist()
        if r["split"] == split
    ]


def sample_and_grade(
    *,
    engine: Engine,
    task: Task,
    problems: Sequence[tuple[Problem, str]],
    n: int,
    sampling: Sampling,
    seed: int,
    code_version: str,
    id_prefix: str,
    cached: pa.Table | None,
    shard_prompts: int,
    save_shard: Callable[[int, pa.Table], None] | None = None,
    extra: Row | None = None,
) -> pa.Table:
    """n graded samples per problem; rows in (problem, sample index) order."""
    pool: dict[str, Row] = {r["cache_key"]: r for r in cached.to_pylist()} if cached is not None else {}
    fixed = {"engine": engine.engine_name, "weight_digest": engine.weight_digest, "seed": seed}
    sampling_json = sampling.to_json()
    out: list[Row] = []
    n_shards = (len(problems) + shard_prompts - 1) // shard_prompts
    reused = 0
    for s in range(n_shards):
        shard = problems[s * shard_prompts : (s + 1) * shard_prompts]
        keys = {
            (p.prompt_id, i): digest(
                engine.weight_digest, engine.engine_name, text, sampling_json, i, seed, code_version
            )
            for p, text in shard
            for i in range(n)
        }
        missing = [(j, i) for j, (p, _) in enumerate(shard) for i in range(n) if keys[(p.prompt_id, i)] not in pool]
        reused += len(keys) - len(missing)
        fresh = _generate_missing(engine, [text for _, text in shard], missing, sampling, seed)
        rows, graded = [], []
        for p, text in shard:
            for i in range(n):
                key = keys[(p.prompt_id, i)]
                if key in pool:
                    rows.append(pool[key])
                    continue
                completion, num_tokens, finish, sample_seed = fresh[(text, i)]
                graded.append((len(rows), p, completion))
                rows.append(
                    {
                        "sample_id": f"{id_prefix}/{p.prompt_id}/{i}",
                        "prompt_id": p.prompt_id,
                        "sample_index": i,
                        "prompt": text,
                        "completion": completion,
                        "answer": task.extract_answer(completion),
                        "correct": False,
                        "num_tokens": num_tokens,
                        "finish_reason": finish,
                        "temperature": sampling.temperature,
                        "top_p": sampling.top_p,
                        "max_new_tokens": sampling.max_new_tokens,
                        "sample_seed": sample_seed,
                        **fixed,
                        **(extra or {}),
                        "cache_key": key,
                    }
                )
        verdicts = grade_many(task, [p for _, p, _ in graded], [c for _, _, c in graded])
        for (j, _, _), ok in zip(graded, verdicts, strict=True):
            rows[j]["correct"] = bool(ok)
        if missing and save_shard is not None:
            save_shard(s, _typed(pa.Table.from_pylist(rows)))
        out.extend(rows)
        log.info("shard %d/%d: %d samples, %d computed", s + 1, n_shards, len(rows), len(missing))
    log.info("%d samples, %d reused from cache", len(out), reused)
    return _typed(pa.Table.from_pylist(out))


def _typed(table: pa.Table) -> pa.Table:
    """`answer` is a string column even when no row has an answer (inference would say null)."""
    if "answer" in table.column_names:
        i = table.column_names.index("answer")
        table = table.set_column(i, "answer", table.column(i).cast(pa.string()))
    return table


def _generate_missing(
    engine: Engine, prompts: list[str], missing: list[tuple[int, int]], sampling: Sampling, seed: int
) -> dict[tuple[str, int], tuple[str, int, str, int]]:
    """Generate the missing (prompt position, sample index) pairs, grouped into contiguous index runs."""
    runs: dict[tuple[int, int], list[int]] = {}
    by_prompt: dict[int, list[int]] = {}
    for j, i in missing:
        by_prompt.setdefault(j, []).append(i)
    for j, idx in by_prompt.items():
        start = prev = idx[0]
        for i in [*idx[1:], None]:
            if i is not None and i == prev + 1:
                prev = i
                continue
            runs.setdefault((start, prev - start + 1), []).append(j)
            if i is not None:
                start = prev = i
    fresh = {}
    for (first, count), js in runs.items():
        texts = [prompts[j] for j in js]
        for g in engine.generate(texts, count, sampling, seed, first_sample=first):
            fresh[(texts[g.prompt_index], g.sample_index)] = (g.text, g.num_tokens, g.finish_reason, g.sample_seed)
    return fresh


def staged_run(
    warehouse: Warehouse, stage: str, experiment: str, round: int, run_key: str
) -> tuple[pa.Table | None, Callable[[int, pa.Table], None]]:
    """Rows reusable for this stage (the previous table plus finished shards) and a shard writer."""
    tables = []
    if warehouse.exists(stage, experiment, round):
        tables.append(warehouse.read(stage, experiment, round).drop_columns(["experiment", "round"]))
    tables += list(warehouse.read_shards(stage, experiment, round, run_key).values())
    cached = pa.concat_tables(tables, promote_options="default") if tables else None

    def save(shard: int, table: pa.Table) -> None:
        warehouse.write_shard(stage, experiment, round, shard, table, run_key)

    return cached, save
