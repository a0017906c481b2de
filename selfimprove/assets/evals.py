"""The eval asset: held-out accuracy of the model a round starts from (greedy and sampled)."""

import dagster as dg
import pyarrow as pa

from selfimprove.assets.common import Experiment, output
from selfimprove.assets.sampling import problems_of, sample_and_grade, task_sampling
from selfimprove.resources.engine import Engine, Sampling
from selfimprove.resources.engines import EngineResource

CODE_VERSION = "1"


def eval_rows(exp: Experiment, r: int, engine: Engine, prompts: pa.Table) -> pa.Table:
    spec = exp.spec
    problems = problems_of(prompts, "eval")
    common = dict(
        engine=engine,
        task=exp.task,
        problems=problems,
        seed=spec.seed,
        code_version=CODE_VERSION,
        cached=None,
        shard_prompts=len(problems) or 1,
    )
    greedy = task_sampling(exp.task, Sampling(0.0, 1.0, spec.generation.max_new_tokens))
    tables = [
        sample_and_grade(n=1, sampling=greedy, id_prefix=f"{exp.name}/r{r}/greedy", extra={"mode": "greedy"}, **common)
    ]
    if spec.eval.samples:
        tables.append(
            sample_and_grade(
                n=spec.eval.samples,
                sampling=task_sampling(exp.task, spec.generation.sampling()),
                id_prefix=f"{exp.name}/r{r}/sampled",
                extra={"mode": "sampled"},
                **common,
            )
        )
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
    def eval_(prompts: pa.Table, model: pa.Table, engines: EngineResource) -> dg.Output[pa.Table]:
        engine = engines.get(model.to_pylist()[0]["path"], exp.spec.model, exp.spec.execution)
        table = eval_rows(exp, r, engine, prompts)
        numbers = {"greedy_accuracy": accuracy(table, "greedy")}
        if exp.spec.eval.samples:
            numbers["sampled_accuracy"] = accuracy(table, "sampled")
        return output(table, numbers, ["prompt_id", "mode", "completion", "correct"])

    return eval_
