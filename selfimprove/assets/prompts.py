"""The prompts asset: disjoint train (self-improvement) and eval (held-out) splits of the task."""

import dagster as dg
import pyarrow as pa

from selfimprove.assets.common import Experiment, output

CODE_VERSION = "1"


def prompt_rows(exp: Experiment) -> pa.Table:
    spec, task = exp.spec, exp.task
    rows = []
    for split, n in (("train", spec.task.train_prompts), ("eval", spec.task.eval_prompts)):
        for p in task.load(n, spec.seed, split):
            rows.append(
                {
                    "prompt_id": p.prompt_id,
                    "split": split,
                    "question": p.question,
                    "reference": p.reference,
                    "prompt": task.generation_prompt(p),
                    "seed": spec.seed,
                }
            )
    train = {r["prompt_id"] for r in rows if r["split"] == "train"}
    leaked = [r["prompt_id"] for r in rows if r["split"] == "eval" and r["prompt_id"] in train]
    if leaked:
        raise ValueError(f"task {task.name}: {len(leaked)} eval prompts also in train, e.g. {leaked[0]}")
    return pa.Table.from_pylist(rows)


def prompts_asset(exp: Experiment) -> dg.AssetsDefinition:
    @dg.asset(
        key=exp.key("prompts"),
        group_name=exp.group(),
        kinds={"parquet"},
        code_version=CODE_VERSION,
        description="Task prompts: the train split feeds self-improvement, the disjoint eval split measures it.",
    )
    def prompts() -> dg.Output[pa.Table]:
        table = prompt_rows(exp)
        splits = table.column("split").to_pylist()
        return output(
            table,
            {"train": splits.count("train"), "eval": splits.count("eval")},
            ["prompt_id", "split", "question", "reference"],
        )

    return prompts
