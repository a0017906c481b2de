"""The eval asset: held-out accuracy of the model a round starts from (greedy and sampled), and the check that
a round's distillation did not make it significantly worse (a check of its own: it compares two evals)."""

import dagster as dg
import pyarrow as pa
from dagster import AssetExecutionContext

from selfimprove.assets.common import Experiment, digest, output
from selfimprove.assets.sampling import EngineSource, lazy_engine, problems_of, sample_and_grade, task_sampling
from selfimprove.assets.shards import staged_run
from selfimprove.resources.engine import Sampling
from selfimprove.resources.engines import EngineResource
from selfimprove.resources.io_manager import WarehouseResource
from selfimprove.resources.warehouse import Warehouse
from selfimprove.verdicts import paired_change

CODE_VERSION = "1"


def eval_rows(
    exp: Experiment,
    r: int,
    engine: EngineSource,
    prompts: pa.Table,
    warehouse: Warehouse | None = None,
    *,
    weight_digest: str | None = None,
    engine_name: str | None = None,
    stats: dict[str, int] | None = None,
) -> pa.Table:
    """Greedy and sampled rows on the held-out prompts, cached and sharded like generations.

    With a `warehouse`, rows of the previous eval table whose keys match are reused and each finished
    shard is saved, so a rerun computes only what is missing (and loads no model if nothing is).
    """
    spec = exp.spec
    problems = problems_of(prompts, "eval")
    modes = [("greedy", 1, Sampling(0.0, 1.0, spec.generation.max_new_tokens))]
    if spec.eval.samples:
        modes.append(("sampled", spec.eval.samples, spec.generation.sampling()))
    source = lazy_engine(engine, weight_digest, engine_name)
    tables, totals = [], {"rows": 0, "reused": 0, "computed": 0}
    for mode, n, sampling in modes:
        sampling = task_sampling(exp.task, sampling)
        cached, save, run_key = None, None, ""
        if warehouse is not None:
            run_key = digest(
                source.weight_digest, source.engine_name, mode, sampling.to_json(), n, spec.seed, CODE_VERSION
            )
            cached, save = staged_run(warehouse, "eval", exp.name, r, run_key)
        counts: dict[str, int] = {}
        tables.append(
            sample_and_grade(
                engine=source,
                task=exp.task,
                problems=problems,
                n=n,
                sampling=sampling,
                seed=spec.seed,
                code_version=CODE_VERSION,
                id_prefix=f"{exp.name}/r{r}/{mode}",
                cached=cached,
                shard_prompts=spec.generation.shard_prompts,
                save_shard=save,
                extra={"mode": mode},
                stats=counts,
            )
        )
        totals = {k: totals[k] + counts[k] for k in totals}
    if warehouse is not None:
        warehouse.clear_staging("eval", exp.name, r)
    if stats is not None:
        stats.update(totals)
    return pa.concat_tables(tables)


def accuracy(table: pa.Table, mode: str) -> float | None:
    rows = [r["correct"] for r in table.select(["mode", "correct"]).to_pylist() if r["mode"] == mode]
    return sum(rows) / len(rows) if rows else None


def eval_asset(exp: Experiment, r: int) -> dg.AssetsDefinition:
    what = "the base model" if r == 0 else f"the round-{r - 1} checkpoint"

    @dg.asset(
        key=exp.key("eval", r),
        ins={"prompts": dg.AssetIn(exp.key("prompts")), "model": dg.AssetIn(exp.model_key(r))},
        group_name=exp.group(r),
        kinds={"pytorch", "parquet"},
        code_version=CODE_VERSION,
        pool="model",
        description=f"Held-out accuracy of {what}: greedy, and the mean over sampled completions.",
    )
    def eval_(
        context: AssetExecutionContext,
        prompts: pa.Table,
        model: pa.Table,
        engines: EngineResource,
        warehouse: WarehouseResource,
    ) -> dg.Output[pa.Table]:
        manifest = model.to_pylist()[0]
        stats: dict[str, int] = {}
        table = eval_rows(
            exp,
            r,
            lambda: engines.get(manifest["path"], exp.spec.model, exp.spec.execution),
            prompts,
            warehouse.get(),
            weight_digest=manifest["weight_digest"],
            engine_name=exp.spec.model.engine,
            stats=stats,
        )
        context.log.info(f"eval {r}: {table.num_rows} rows ({stats['reused']} reused, {stats['computed']} computed)")
        numbers = {"greedy_accuracy": accuracy(table, "greedy")}
        if exp.spec.eval.samples:
            numbers["sampled_accuracy"] = accuracy(table, "sampled")
        return output(table, numbers, ["prompt_id", "mode", "completion", "correct"])

    return eval_


def greedy_change(now: pa.Table, before: pa.Table, n_boot: int, seed: int) -> tuple[float, float, float]:
    """Held-out greedy accuracy now - before over the prompts in both, with a paired prompt-bootstrap 95% CI."""

    def per_prompt(t: pa.Table) -> dict[str, float]:
        rows = t.select(["prompt_id", "mode", "correct"]).to_pylist()
        return {r["prompt_id"]: float(r["correct"]) for r in rows if r["mode"] == "greedy"}

    return paired_change(per_prompt(now), per_prompt(before), n_boot, seed)


def heldout_check(exp: Experiment, r: int) -> dg.AssetChecksDefinition:
    """`heldout_not_worse` on the eval after round r's distillation, against the eval before it."""

    @dg.asset_check(
        asset=exp.key("eval", r + 1),
        name="heldout_not_worse",
        additional_ins={"previous": dg.AssetIn(exp.key("eval", r))},
        description=f"Held-out greedy accuracy after round {r}'s distillation is not significantly below its level "
        "before: fails (a warning) only when the paired prompt-bootstrap 95% CI of the change lies below 0.",
    )
    def heldout_not_worse(eval_: pa.Table, previous: pa.Table) -> dg.AssetCheckResult:
        change, lo, hi = greedy_change(eval_, previous, exp.spec.gap.bootstrap, exp.spec.seed)
        return dg.AssetCheckResult(
            passed=not hi < 0,  # NaN (no common prompts) passes: nothing to compare
            severity=dg.AssetCheckSeverity.WARN,
            description=f"change {change:+.3f} [95% CI {lo:+.3f}, {hi:+.3f}]",
            metadata={"change": round(change, 4), "change_lo": round(lo, 4), "change_hi": round(hi, 4)},
        )

    return heldout_not_worse
