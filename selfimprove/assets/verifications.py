"""The verifications asset: the model (or a cross-verifier) scores the round's samples.

Rows are cached like generations: a row's key hashes the verifier's weight digest, the engine, the
method, the verified sample (its generation cache key and content), the method's verification config,
the verification index, the seed and the code version. A rerun reuses the rows of the previous table
whose keys match and computes only the missing candidates of each method; a tournament works on whole
prompt groups, so a group is recomputed when any member is new. With every row cached no model is loaded.
Its check: every sample verified once by each method.
"""

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import dagster as dg
import pyarrow as pa
from dagster import AssetExecutionContext

from selfimprove.assets.checked import TableCheck, stage_asset
from selfimprove.assets.common import Experiment, digest, output
from selfimprove.assets.sampling import EngineSource, IdentityMismatch, lazy_engine
from selfimprove.assets.scoring import parse_failure_rates
from selfimprove.assets.shards import SaveShard, shard_by_prompt, staged_run
from selfimprove.resources.engine import Engine, Generation, map_units
from selfimprove.resources.engines import EngineResource
from selfimprove.resources.io_manager import WarehouseResource
from selfimprove.resources.model_source import resolve_model
from selfimprove.spec import VerificationSpec
from selfimprove.verification import VERIFIERS, Candidate, verify
from selfimprove.verification.checks import CheckedEngine, known_checks

# 2: keys name the method and the verified sample; rows ordered by (candidate, index)
# 3: a sample's key leaves out its grade (`correct`), which no model verifier sees (the oracle's key has it)
CODE_VERSION = "3"

log = logging.getLogger(__name__)

Row = dict[str, Any]
# Verification settings that never change a row of a method (k only adds indices; the verifier is its digest).
_NOT_IN_KEY = {"methods", "k", "on_parse_failure", "verifier"}


def candidates(generations: pa.Table, questions: dict[str, str]) -> list[Candidate]:
    cols = ["sample_id", "prompt_id", "completion", "answer", "correct"]
    return [
        Candidate(r["sample_id"], r["prompt_id"], questions[r["prompt_id"]], r["completion"], r["answer"], r["correct"])
        for r in generations.select(cols).to_pylist()
    ]


def generation_keys(generations: pa.Table) -> list[str]:
    """Each sample's generation cache key (a content hash of the row for tables without one)."""
    if "cache_key" in generations.column_names:
        return [str(k) for k in generations.column("cache_key").to_pylist()]
    return [digest(*sorted(r.items())) for r in generations.to_pylist()]


def method_config(spec: VerificationSpec, method: str) -> str:
    """The verification settings a method's rows depend on, as canonical JSON."""
    others = {f for v in VERIFIERS.values() if v.name != method for f in v.settings}
    skip = _NOT_IN_KEY | (others - set(VERIFIERS[method].settings))
    return json.dumps(spec.model_dump(mode="json", exclude=skip), sort_keys=True, default=str)


@dataclass
class _Unit:
    """What is computed together: one candidate, or a tournament's whole prompt group."""

    members: list[int]  # candidate positions
    keys: dict[tuple[int, int], str] = field(default_factory=dict)  # (position, verification index) -> row key
    required: list[tuple[int, int]] = field(default_factory=list)  # cached rows that prove the unit complete


def _units(
    method: str, cands: Sequence[Candidate], sample_digests: Sequence[str], spec: VerificationSpec, base: tuple
) -> list[_Unit]:
    if VERIFIERS[method].per_prompt:
        groups: dict[str, list[int]] = {}
        for j, c in enumerate(cands):
            groups.setdefault(c.prompt_id, []).append(j)
        units = []
        for pid, members in groups.items():
            group = digest(*base, pid, *sorted(sample_digests[j] for j in members))
            unit = _Unit(members)
            unit.keys = {
                (j, rnd): digest(group, cands[j].sample_id, rnd)
                for j in members
                for rnd in range(spec.tournament_rounds)
            }
            unit.required = [(j, 0) for j in members]  # every player has a first-round row (match or bye)
            units.append(unit)
        return units
    indices = range(spec.k) if VERIFIERS[method].repeated else range(1)
    units = []
    for j in range(len(cands)):
        key = digest(*base, sample_digests[j])
        unit = _Unit([j], {(j, i): digest(key, i) for i in indices})
        unit.required = list(unit.keys)
        units.append(unit)
    return units


def verification_rows(
    exp: Experiment,
    engine: EngineSource,
    cands: list[Candidate],
    generator_digest: str,
    cached: pa.Table | None = None,
    *,
    gen_keys: Sequence[str] | None = None,
    weight_digest: str | None = None,
    engine_name: str | None = None,
    stats: dict[str, int] | None = None,
    save_shard: SaveShard | None = None,
) -> pa.Table:
    """Verification rows of every configured method, reusing `cached` rows whose keys match.

    `engine` is an engine, or a zero-argument factory called only when some candidate is missing
    (then `weight_digest` and `engine_name` make the keys). `gen_keys` are the candidates'
    generation cache keys; `stats` receives `rows`, `reused` and `computed` row counts. Candidates
    are verified in the generation stage's prompt shards; `save_shard`, if given, receives each shard
    that computed something (all its rows), so a killed run resumes from its finished shards.
    """
    source = lazy_engine(engine, weight_digest, engine_name)
    pool: dict[str, Row] = {r["cache_key"]: r for r in cached.to_pylist()} if cached is not None else {}
    keys = list(gen_keys) if gen_keys is not None else [""] * len(cands)
    try:
        table, counts = _rows(exp, source, cands, generator_digest, pool, keys, save_shard)
    except IdentityMismatch as e:
        log.warning("%s; recomputing the keys from the loaded engine", e)
        table, counts = _rows(exp, e.engine, cands, generator_digest, pool, keys, save_shard)
    if stats is not None:
        stats.update(counts)
    return table


def _rows(
    exp: Experiment,
    engine: Engine,
    cands: list[Candidate],
    generator_digest: str,
    pool: dict[str, Row],
    gen_keys: list,
    save_shard: SaveShard | None,
) -> tuple[pa.Table, dict[str, int]]:
    spec, seed = exp.spec.verification, exp.spec.seed
    kind = getattr(exp.task, "kind", "math")  # natural-language verifier prompts depend on the task kind
    ident = (engine.weight_digest, engine.engine_name)
    sample_digests = [  # not `correct`: re-grading a sample (new reference) keeps its verifications
        digest(c.sample_id, c.prompt_id, k, c.question, c.completion, c.answer)
        for c, k in zip(cands, gen_keys, strict=True)
    ]
    position = {c.sample_id: j for j, c in enumerate(cands)}
    shards = shard_by_prompt([c.prompt_id for c in cands], exp.spec.generation.shard_prompts)
    shard_of = {j: s for s, members in enumerate(shards) for j in members}
    graded = [digest(d, c.correct) for d, c in zip(sample_digests, cands, strict=True)]  # what the oracle reads
    units = {
        method: _units(
            method,
            cands,
            sample_digests if VERIFIERS[method].needs_model else graded,
            spec,
            (*ident, method, kind, method_config(spec, method), seed, CODE_VERSION),
        )
        for method in spec.methods
    }
    found: dict[str, list[tuple[int, int, Row]]] = {method: [] for method in spec.methods}
    counts = {"reused": 0, "computed": 0, "checks_generated": 0, "checks_reused": 0}
    # per shard: the cached rows it reuses, and per method the keys and candidates still to verify
    plans: list[tuple[list[Row], list[tuple[str, dict[tuple[int, int], str], list[Candidate]]]]] = []
    for s in range(len(shards)):
        hits_rows: list[Row] = []
        todo_by_method = []
        for method in spec.methods:
            todo: list[_Unit] = []
            for unit in (u for u in units[method] if shard_of[u.members[0]] == s):
                if all(unit.keys[k] in pool for k in unit.required):
                    hits = [(j, i, pool[key]) for (j, i), key in unit.keys.items() if key in pool]
                    found[method] += hits
                    hits_rows += [r for _, _, r in hits]
                    counts["reused"] += len(hits)
                else:
                    todo.append(unit)
            if todo:
                keys = {k: v for unit in todo for k, v in unit.keys.items()}
                todo_by_method.append((method, keys, [cands[j] for unit in todo for j in unit.members]))
        plans.append((hits_rows, todo_by_method))

    def finish(s: int, fresh_by_method: list[list[Row]]) -> None:
        shard_rows, todo_by_method = list(plans[s][0]), plans[s][1]
        for (method, keys, _), fresh in zip(todo_by_method, fresh_by_method, strict=True):
            for row in fresh:
                j = position[row["sample_id"]]
                row.update(seed=seed, verifier_digest=ident[0], generator_digest=generator_digest, engine=ident[1])
                row["cache_key"] = keys[(j, row["verification_index"])]
                found[method].append((j, row["verification_index"], row))
            shard_rows += fresh
        computed = sum(len(f) for f in fresh_by_method)
        if computed and save_shard is not None:
            save_shard(s, pa.Table.from_pylist([_with_check_key(r) for r in shard_rows]))
        counts["computed"] += computed
        log.info("verification shard %d/%d: %d rows, %d computed", s + 1, len(shards), len(shard_rows), computed)

    # a shard's verifications are one unit of work; one without a model method (the oracle alone) runs here.
    # Written checks are served by their verifier prompt's key: from earlier tables, and (in this process)
    # from this run's earlier shards, since the units share `known`.
    check = partial(_verify_unit, spec=spec, seed=seed, kind=kind, known=known_checks(pool.values()))
    todo_units = [[(method, subset) for method, _, subset in todo] for _, todo in plans]
    work = [s for s, unit in enumerate(todo_units) if any(VERIFIERS[m].needs_model for m, _ in unit)]
    for s in sorted(set(range(len(shards))) - set(work)):
        finish(s, _tally(counts, check(None, todo_units[s])))
    for w, result in map_units(engine, check, [todo_units[s] for s in work]) if work else ():
        finish(work[w], _tally(counts, result))
    rows = [
        _with_check_key(r) for method in spec.methods for _, _, r in sorted(found[method], key=lambda t: (t[0], t[1]))
    ]
    return pa.Table.from_pylist(rows), {"rows": len(rows), **counts}


def _with_check_key(row: Row) -> Row:
    """The row with a `check_key` (null for unwritten methods and rows of tables that predate the column)."""
    return {**row, "check_key": row.get("check_key")}


def _tally(counts: dict[str, int], result: tuple[list[list[Row]], dict[str, int]]) -> list[list[Row]]:
    """Adds a unit's check counts to `counts`; returns its rows."""
    fresh, checks = result
    for name, n in checks.items():
        counts[name] += n
    return fresh


def _verify_unit(
    engine: Engine | None,
    unit: list[tuple[str, list[Candidate]]],
    spec: VerificationSpec,
    seed: int,
    kind: str,
    known: dict[str, Generation],
) -> tuple[list[list[Row]], dict[str, int]]:
    """One shard's model verifications, method by method, and the counts of written checks generated and
    reused; module-level and picklable, so on the Ray backend it runs on a worker with the worker's engine
    (and a copy of `known`)."""
    checks = CheckedEngine(engine, engine.weight_digest, engine.engine_name, known) if engine is not None else None
    out = []
    for method, subset in unit:
        written = checks is not None and VERIFIERS[method].written  # cached by verifier prompt
        fresh = verify(method, checks if written else engine, subset, spec, seed, kind)
        for row in fresh:
            i = row["verification_index"]
            row["check_key"] = checks.key(row["verifier_prompt"], i, spec.sampling(), seed) if written else None
        out.append(fresh)
    return out, {"checks_generated": checks.generated if checks else 0, "checks_reused": checks.reused if checks else 0}


def verification_problems(generations: pa.Table, verifications: pa.Table, methods: list[str]) -> list[str]:
    """Samples not verified exactly once by each configured method (tournament rows may repeat a sample)."""
    problems = []
    ids = set(generations.column("sample_id").to_pylist())
    rows = verifications.select(["sample_id", "method"]).to_pylist()
    for m in methods:
        seen = {r["sample_id"] for r in rows if r["method"] == m}
        if missing := ids - seen:
            problems.append(f"{m}: {len(missing)} of {len(ids)} samples unverified, e.g. {sorted(missing)[0]!r}")
        if extra := seen - ids:
            problems.append(f"{m}: {len(extra)} verified sample(s) not in generations, e.g. {sorted(extra)[0]!r}")
    return problems


def every_sample_verified(methods: list[str]) -> TableCheck:
    def evaluate(verifications: pa.Table, inputs: Mapping[str, Any]) -> dg.AssetCheckResult:
        problems = verification_problems(inputs["generations"], verifications, methods)
        return dg.AssetCheckResult(
            passed=not problems, description="; ".join(problems) or None, metadata={"rows": verifications.num_rows}
        )

    return TableCheck(
        "every_sample_verified",
        f"Each of {', '.join(methods)} verified every sample of the round; blocking: the filter and the gap "
        "would otherwise score missing samples as parse failures.",
        evaluate,
    )


def verifications_asset(exp: Experiment, r: int) -> dg.AssetsDefinition:
    spec = exp.spec.verification
    who = "a cross-verifier" if spec.verifier else "the round's own model"

    @stage_asset(
        key=exp.key("verifications", r),
        checks=[every_sample_verified(spec.methods)],
        ins={
            "generations": dg.AssetIn(exp.key("generations", r)),
            "prompts": dg.AssetIn(exp.key("prompts")),
            "model": dg.AssetIn(exp.model_key(r)),
        },
        group_name=exp.group(r),
        kinds={"pytorch", "parquet"},
        code_version=CODE_VERSION,
        pool="model",
        description=f"Round {r}: {who} verifies every sample with {', '.join(spec.methods)}.",
    )
    def verifications(
        context: AssetExecutionContext,
        generations: pa.Table,
        prompts: pa.Table,
        model: pa.Table,
        engines: EngineResource,
        warehouse: WarehouseResource,
    ) -> dg.Output[pa.Table]:
        manifest = model.to_pylist()[0]
        source: EngineSource
        if spec.verifier is None:  # the manifest's digest is that of the loaded weights: no model needed for keys
            path, model_spec = manifest["path"], exp.spec.model
            source = lambda: engines.get(path, model_spec, exp.spec.execution)  # noqa: E731
            ident = {"weight_digest": manifest["weight_digest"], "engine_name": model_spec.engine}
        else:  # a cross-verifier has no manifest: its digest comes from loading it
            source = engines.get(resolve_model(spec.verifier), spec.verifier, exp.spec.execution)
            ident = {}
        questions = dict(
            zip(prompts.column("prompt_id").to_pylist(), prompts.column("question").to_pylist(), strict=True)
        )
        cands = candidates(generations, questions)
        gen_keys = generation_keys(generations)
        # one shard folder per (verifier, config, samples): a killed run resumes from its finished shards
        verifier_id = ident.get("weight_digest") or spec.verifier.model_dump_json()  # type: ignore[union-attr]
        run_key = digest(verifier_id, spec.model_dump_json(), exp.spec.seed, CODE_VERSION, *gen_keys)
        cached, save = staged_run(warehouse.get(), "verifications", exp.name, r, run_key)
        stats: dict[str, int] = {}
        table = verification_rows(
            exp,
            source,
            cands,
            manifest["weight_digest"],
            cached,
            gen_keys=gen_keys,
            stats=stats,
            save_shard=save,
            **ident,
        )
        warehouse.get().clear_staging("verifications", exp.name, r)  # this run's shards and any older ones
        verifier = table.column("verifier_digest")[0].as_py() if table.num_rows else ident.get("weight_digest", "")
        numbers: dict[str, float | int | str] = {
            "verifier_digest": verifier,
            "reused_rows": stats["reused"],
            "computed_rows": stats["computed"],
            "checks_generated": stats["checks_generated"],  # written checks the model wrote in this run
            "checks_reused": stats["checks_reused"],  # written checks served by their verifier prompt's key
        }
        failed = parse_failure_rates(table)
        numbers |= {f"{m}_parse_failure_rate": failed[m] for m in spec.methods if m in failed}
        context.log.info(
            f"round {r}: {table.num_rows} verification rows ({stats['reused']} reused, {stats['computed']} computed)"
        )
        return output(table, numbers, ["sample_id", "method", "raw", "score", "ok"])

    return verifications
