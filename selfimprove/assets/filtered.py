"""The filtered asset: the samples that pass the verifier(s), with their training weights."""

import dagster as dg
import numpy as np
import pyarrow as pa

from selfimprove.assets.common import Experiment, output
from selfimprove.assets.scoring import answer_classes, rule, selection
from selfimprove.spec import FilterSpec

CODE_VERSION = "2"  # 2: tie rule (filter.ties) and the majority filter


class FilterConfig(dg.Config):
    """Run-config overrides of the experiment's filter; unset fields keep the spec's values."""

    kind: str | None = None
    alpha: float | None = None
    tau: float | None = None
    k: int | None = None
    beta: float | None = None
    ensemble: str | None = None
    empty: str | None = None
    ties: str | None = None

    def apply(self, base: FilterSpec) -> FilterSpec:
        overrides = {k: v for k, v in self.model_dump().items() if v is not None}
        return FilterSpec.model_validate({**base.model_dump(), **overrides})


def filtered_rows(
    generations: pa.Table,
    verifications: pa.Table,
    methods: list[str],
    f: FilterSpec,
    policy: str,
    classes: np.ndarray | None = None,
) -> pa.Table:
    """The kept samples with score and weight; `classes` (answer classes) is needed by the majority filter only."""
    score, weight = selection(generations, verifications, methods, f, policy, classes)
    keep = np.flatnonzero(weight > 0)
    cols = ["sample_id", "prompt_id", "sample_index", "prompt", "completion", "answer", "correct", "seed"]
    table = generations.select(cols).take(pa.array(keep, pa.int64()))
    return (
        table.append_column("score", pa.array(score[keep], pa.float64()))
        .append_column("weight", pa.array(weight[keep], pa.float64()))
        .append_column("rule", pa.array([rule(f, methods)] * len(keep), pa.string()))
    )


def filtered_asset(exp: Experiment, r: int) -> dg.AssetsDefinition:
    spec = exp.spec

    @dg.asset(
        key=exp.key("filtered", r),
        ins={
            "generations": dg.AssetIn(exp.key("generations", r)),
            "verifications": dg.AssetIn(exp.key("verifications", r)),
        },
        group_name=exp.group(r),
        kinds={"parquet"},
        code_version=CODE_VERSION,
        description=f"Round {r}: samples kept by {rule(spec.filter, spec.verification.methods)}, with weights.",
    )
    def filtered(config: FilterConfig, generations: pa.Table, verifications: pa.Table) -> dg.Output[pa.Table]:
        f = config.apply(spec.filter)
        classes = answer_classes(exp.task, generations) if f.kind == "majority" else None
        table = filtered_rows(
            generations, verifications, spec.verification.methods, f, spec.verification.on_parse_failure, classes
        )
        correct = table.column("correct").to_pylist()
        return output(
            table,
            {
                "kept_fraction": table.num_rows / max(1, generations.num_rows),
                "kept_accuracy": sum(correct) / max(1, len(correct)),
                "rule": rule(f, spec.verification.methods),
            },
            ["sample_id", "completion", "correct", "score", "weight"],
        )

    return filtered
