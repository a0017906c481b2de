"""The generations asset: N samples per train prompt from the round's model, graded by the task."""

import dagster as dg
import pyarrow as pa
from dagster import AssetExecutionContext

from selfimprove.assets.common import Experiment, digest, output
from selfimprove.assets.sampling import problems_of, sample_and_grade, task_sampling
from selfimprove.assets.shards import staged_run
from selfimprove.resources.engines import EngineResource
from selfimprove.resources.io_manager import WarehouseResource

CODE_VERSION = "1"


def generations_asset(exp: Experiment, r: int) -> dg.AssetsDefinition:
    gen = exp.spec.generation

    @dg.asset(
        key=exp.key("generations", r),
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
        table = sample_and_grade(
            engine=lambda: engines.get(manifest["path"], exp.spec.model),
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
        )
        warehouse.get().clear_staging("generations", exp.name, r)  # this run's shards and any older ones
        acc = sum(table.column("correct").to_pylist()) / max(1, table.num_rows)
        context.log.info(f"round {r}: {table.num_rows} samples, accuracy {acc:.3f}")
        return output(
            table,
            {"sample_accuracy": acc, "weight_digest": weights},
            ["sample_id", "completion", "answer", "correct"],
        )

    return generations
