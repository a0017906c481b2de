"""The generations asset: N samples per train prompt from the round's model, graded by the task, and its
check that every prompt has its N samples."""

from collections import Counter
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pyarrow as pa
from dagster import AssetExecutionContext

from selfimprove.assets.checked import TableCheck, stage_asset
from selfimprove.assets.common import Experiment, digest, output
from selfimprove.assets.sampling import problems_of, sample_and_grade, task_sampling
from selfimprove.assets.shards import staged_run
from selfimprove.resources.engines import EngineResource
from selfimprove.resources.io_manager import WarehouseResource

CODE_VERSION = "1"


def generation_problems(generations: pa.Table, n: int) -> list[str]:
    """What is wrong with a generations table: prompts without n samples, repeated sample ids, missing seeds."""
    problems = []
    counts = Counter(generations.column("prompt_id").to_pylist())
    short = sorted(p for p, c in counts.items() if c != n)
    if short:
        problems.append(f"{len(short)} prompt(s) without {n} samples, e.g. {short[0]!r} has {counts[short[0]]}")
    ids = generations.column("sample_id").to_pylist()
    if len(set(ids)) != len(ids):
        problems.append(f"{len(ids) - len(set(ids))} repeated sample_id(s)")
    if generations.column("seed").null_count:
        problems.append(f"{generations.column('seed').null_count} row(s) without a seed")
    if not generations.num_rows:
        problems.append("no samples")
    return problems


def samples_complete(n: int) -> TableCheck:
    def evaluate(generations: pa.Table, _: Mapping[str, Any]) -> dg.AssetCheckResult:
        problems = generation_problems(generations, n)
        return dg.AssetCheckResult(
            passed=not problems,
            description="; ".join(problems) or None,
            metadata={"rows": generations.num_rows, "prompts": len(set(generations.column("prompt_id").to_pylist()))},
        )

    return TableCheck(
        "samples_complete",
        f"Every prompt has its {n} samples, each with a unique sample_id and a seed; blocking: verification, the "
        "gap and distillation do not run on an incomplete round.",
        evaluate,
    )


def generations_asset(exp: Experiment, r: int) -> dg.AssetsDefinition:
    gen = exp.spec.generation

    @stage_asset(
        key=exp.key("generations", r),
        checks=[samples_complete(gen.n)],
        ins={"prompts": dg.AssetIn(exp.key("prompts")), "model": dg.AssetIn(exp.model_key(r))},
        group_name=exp.group(r),
        kinds={"pytorch", "parquet"},
        code_version=CODE_VERSION,
        pool="model",
        description=f"Round {r}: {gen.n} samples per train prompt from the round's model, graded by the task.",
    )
    def generations(
        context: AssetExecutionContext,
        prompts: pa.Table,
        model: pa.Table,
        engines: EngineResource,
        warehouse: WarehouseResource,
    ) -> dg.Output[pa.Table]:
        manifest = model.to_pylist()[0]
        # keys come from the manifest's weight digest; the model is loaded only if some row is missing
        weights, name = manifest["weight_digest"], exp.spec.model.engine
        run_key = digest(weights, name, gen.model_dump_json(), exp.spec.seed, CODE_VERSION)
        cached, save = staged_run(warehouse.get(), "generations", exp.name, r, run_key)
        stats: dict[str, int] = {}
        table = sample_and_grade(
            engine=lambda: engines.get(manifest["path"], exp.spec.model, exp.spec.execution),
            weight_digest=weights,
            engine_name=name,
            task=exp.task,
            problems=problems_of(prompts, "train"),
            n=gen.n,
            sampling=task_sampling(exp.task, gen.sampling()),
            seed=exp.spec.seed,
            code_version=CODE_VERSION,
            id_prefix=f"{exp.name}/r{r}",
            cached=cached,
            shard_prompts=gen.shard_prompts,
            save_shard=save,
            extra={"model_path": manifest["path"]},
            stats=stats,
        )
        warehouse.get().clear_staging("generations", exp.name, r)  # this run's shards and any older ones
        acc = sum(table.column("correct").to_pylist()) / max(1, table.num_rows)
        context.log.info(f"round {r}: {table.num_rows} samples, accuracy {acc:.3f}")
        return output(
            table,
            {
                "sample_accuracy": acc,
                "weight_digest": weights,
                "reused_rows": stats["reused"],
                "computed_rows": stats["computed"],
            },
            ["sample_id", "completion", "answer", "correct"],
        )

    return generations
