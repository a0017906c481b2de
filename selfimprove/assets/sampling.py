"""Sampling and grading with a row-level cache and resumable shards (generations and evals share it).

Every row carries a cache key: a hash of the weight digest, the engine, the exact prompt text, the
sampling parameters, the sample index, the seed and the stage's code version. A rerun reuses every
row whose key it finds (in the previous table or in finished shards of an interrupted run) and
computes only what is missing, so raising N computes only the new samples and a new checkpoint
reuses nothing. Prompts are processed in fixed shards, each written atomically once finished.

The engine may be handed over lazily (`LazyEngine`): the keys need only the weight digest (from the
model's manifest row) and the engine name, so a stage whose rows are all cached never loads a model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import pyarrow as pa

from selfimprove.assets.common import digest
from selfimprove.assets.shards import SaveShard, shard_by_prompt
from selfimprove.resources.engine import Engine, Generation, Sampling
from selfimprove.tasks.base import Problem, Task, grade_many, grading_key

log = logging.getLogger(__name__)

Row = dict[str, Any]


class IdentityMismatch(RuntimeError):
    """A lazily acquired engine serves other weights (or is another engine) than its keys assumed."""

    def __init__(self, engine: Engine, weight_digest: str, engine_name: str) -> None:
        super().__init__(
            f"engine {engine.engine_name} serves weights {engine.weight_digest}, "
            f"but the manifest said {engine_name} {weight_digest}"
        )
        self.engine = engine


class LazyEngine:
    """An engine acquired on first use; its identity (weight digest, engine name) is known up front.

    `weight_digest` comes from the model's manifest row, which holds the digest of the weights as
    loaded, so cache keys need no model. Acquiring an engine whose identity differs raises
    `IdentityMismatch` (carrying the real engine) before anything is computed with the wrong keys.
    """

    def __init__(self, acquire: Callable[[], Engine], weight_digest: str, engine_name: str) -> None:
        self._acquire = acquire
        self._engine: Engine | None = None
        self.weight_digest = weight_digest
        self.engine_name = engine_name

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            engine = self._acquire()
            if (engine.weight_digest, engine.engine_name) != (self.weight_digest, self.engine_name):
                raise IdentityMismatch(engine, self.weight_digest, self.engine_name)
            self._engine = engine
        return self._engine

    def generate(
        self, prompts: Sequence[str], n: int, sampling: Sampling, seed: int, first_sample: int = 0
    ) -> list[Generation]:
        return self.engine.generate(prompts, n, sampling, seed, first_sample=first_sample)

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        return self.engine.score(prompts, continuations)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()

    def __getattr__(self, name: str) -> Any:  # anything else (e.g. a tokenizer) needs the real engine
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.engine, name)


EngineSource = Engine | Callable[[], Engine]


def lazy_engine(engine: EngineSource, weight_digest: str | None, engine_name: str | None) -> Engine:
    """`engine` itself when it is an engine; a `LazyEngine` over a zero-argument factory otherwise."""
    if hasattr(engine, "generate"):
        return engine  # type: ignore[return-value]
    if weight_digest is None or engine_name is None:
        raise ValueError("an engine factory needs the weight digest and engine name its keys are made of")
    return LazyEngine(engine, weight_digest, engine_name)  # type: ignore[return-value]


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


def generation_key(
    weight_digest: str, engine_name: str, prompt: str, sampling: Sampling, index: int, seed: int, code_version: str
) -> str:
    """The cache key of one sample: everything its text depends on, and nothing else (not n, not paths)."""
    return digest(weight_digest, engine_name, prompt, sampling.to_json(), index, seed, code_version)


def sample_and_grade(
    *,
    engine: EngineSource,
    task: Task,
    problems: Sequence[tuple[Problem, str]],
    n: int,
    sampling: Sampling,
    seed: int,
    code_version: str,
    id_prefix: str,
    cached: pa.Table | None,
    shard_prompts: int,
    save_shard: SaveShard | None = None,
    extra: Row | None = None,
    weight_digest: str | None = None,
    engine_name: str | None = None,
    stats: dict[str, int] | None = None,
) -> pa.Table:
    """n graded samples per problem; rows in (problem, sample index) order.

    `engine` is an engine, or a zero-argument factory called only if some row is missing from
    `cached` (then `weight_digest` and `engine_name`, e.g. from the model manifest, make the keys).
    `stats`, if given, receives `rows`, `reused` and `computed` counts.
    """
    source = lazy_engine(engine, weight_digest, engine_name)
    pool: dict[str, Row] = {r["cache_key"]: r for r in cached.to_pylist()} if cached is not None else {}
    run = partial(
        _sample_and_grade,
        task=task,
        problems=problems,
        n=n,
        sampling=sampling,
        seed=seed,
        code_version=code_version,
        id_prefix=id_prefix,
        pool=pool,
        shard_prompts=shard_prompts,
        save_shard=save_shard,
        extra=extra,
    )
    try:
        table, counts = run(source)
    except IdentityMismatch as e:  # the manifest was stale: key by the weights actually loaded
        log.warning("%s; recomputing the keys from the loaded engine", e)
        table, counts = run(e.engine)
    if stats is not None:
        stats.update(counts)
    return table


def _sample_and_grade(
    engine: Engine,
    *,
    task: Task,
    problems: Sequence[tuple[Problem, str]],
    n: int,
    sampling: Sampling,
    seed: int,
    code_version: str,
    id_prefix: str,
    pool: dict[str, Row],
    shard_prompts: int,
    save_shard: SaveShard | None,
    extra: Row | None,
) -> tuple[pa.Table, dict[str, int]]:
    fixed = {"engine": engine.engine_name, "weight_digest": engine.weight_digest, "seed": seed}
    shards = [[problems[j] for j in idx] for idx in shard_by_prompt([p.prompt_id for p, _ in problems], shard_prompts)]
    n_shards = len(shards)
    keys = [
        {
            (p.prompt_id, i): generation_key(
                engine.weight_digest, engine.engine_name, text, sampling, i, seed, code_version
            )
            for p, text in shard
            for i in range(n)
        }
        for shard in shards
    ]
    missing = [
        [(j, i) for j, (p, _) in enumerate(shard) for i in range(n) if keys[s][(p.prompt_id, i)] not in pool]
        for s, shard in enumerate(shards)
    ]
    out: list[Row] = []
    regraded = 0
    for group in _groups([len(m) for m in missing], shard_prompts * n):
        # one generate call for the group: after raising N the new samples of several shards fill a batch
        texts, wanted = [], []
        for s in group:
            wanted += [(len(texts) + j, i) for j, i in missing[s]]
            texts += [text for _, text in shards[s]]
        fresh = _generate_missing(engine, texts, wanted, sampling, seed) if wanted else {}
        for s in group:
            rows, n_regraded = _shard_rows(
                shards[s], keys[s], pool, fresh, task, n, sampling, id_prefix, fixed, extra or {}
            )
            regraded += n_regraded
            if missing[s] and save_shard is not None:
                save_shard(s, _typed(pa.Table.from_pylist(rows)))
            out.extend(rows)
            log.info("shard %d/%d: %d samples, %d computed", s + 1, n_shards, len(rows), len(missing[s]))
    computed = sum(len(m) for m in missing)
    log.info("%d samples, %d reused from cache (%d of them graded again)", len(out), len(out) - computed, regraded)
    counts = {"rows": len(out), "reused": len(out) - computed, "computed": computed, "regraded": regraded}
    return _typed(pa.Table.from_pylist(out)), counts


def _groups(sizes: list[int], target: int) -> list[list[int]]:
    """Consecutive shard indices grouped so that each group computes at most `target` samples
    (or one shard); a shard with nothing to compute joins the group it falls in."""
    groups: list[list[int]] = []
    total = target + 1
    for s, size in enumerate(sizes):
        if groups and total + size <= target:
            groups[-1].append(s)
            total += size
        else:
            groups.append([s])
            total = size
    return groups


def _shard_rows(
    shard: Sequence[tuple[Problem, str]],
    keys: dict[tuple[str, int], str],
    pool: dict[str, Row],
    fresh: dict[tuple[str, int], tuple[str, int, str, int]],
    task: Task,
    n: int,
    sampling: Sampling,
    id_prefix: str,
    fixed: Row,
    extra: Row,
) -> tuple[list[Row], int]:
    """One shard's rows in (problem, sample index) order and how many cached rows were graded again.

    Cached rows are reused; fresh ones are graded, and so is a cached row whose grading key (the
    reference answer and the task's grading rule) differs from the current one: its completion is
    kept, its `answer` and `correct` are redone.
    """
    rows, graded = [], []
    regraded = 0
    for p, text in shard:
        grade_key = grading_key(task, p)
        for i in range(n):
            key = keys[(p.prompt_id, i)]
            if key in pool:  # same content; identity columns follow this run (prefix, model path, ...)
                row = {**pool[key], "sample_id": f"{id_prefix}/{p.prompt_id}/{i}", **extra}
                if row.get("grade_key") != grade_key:
                    graded.append((len(rows), p, row["completion"]))
                    row.update(answer=task.extract_answer(row["completion"]), grade_key=grade_key)
                    regraded += 1
                rows.append(row)
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
                    **extra,
                    "cache_key": key,
                    "grade_key": grade_key,
                }
            )
    if graded:
        verdicts = grade_many(task, [p for _, p, _ in graded], [c for _, _, c in graded])
        for (j, _, _), ok in zip(graded, verdicts, strict=True):
            rows[j]["correct"] = bool(ok)
    return rows, regraded


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
