"""The filtered asset: the samples that pass the verifier(s), with their training weights, and its check that
the filter kept something."""

from collections.abc import Mapping
from enum import Enum
from typing import Any, get_args

import dagster as dg
import numpy as np
import pyarrow as pa
from pydantic import Field

from selfimprove import filters
from selfimprove.assets.checked import TableCheck, stage_asset
from selfimprove.assets.common import Experiment, beside_other_settings, output
from selfimprove.assets.scoring import answer_classes, rule, selection
from selfimprove.resources.io_manager import WarehouseResource
from selfimprove.spec import FilterSpec
from selfimprove.variants import variant_key

CODE_VERSION = "3"  # 2: tie rule (filter.ties) and the majority filter; 3: filter variants side by side


FilterKindChoice = Enum("FilterKindChoice", {k: k for k in filters.FILTERS})  # one launchpad choice per filter
EnsembleChoice = Enum("EnsembleChoice", {k: k for k in get_args(FilterSpec.model_fields["ensemble"].annotation)})
EmptyChoice = Enum("EmptyChoice", {k: k for k in get_args(FilterSpec.model_fields["empty"].annotation)})
TiesChoice = Enum("TiesChoice", {k: k for k in get_args(FilterSpec.model_fields["ties"].annotation)})


class FilterConfig(dg.Config):
    """Run-config overrides of the experiment's filter; unset fields keep the spec's values.

    In the launchpad (materialize `filtered` with shift-click), e.g. `ops: {E__round_1__filtered: {config:
    {kind: threshold, tau: 0.7}}}`. Each setting is a variant of its own in the warehouse (column `variant`).
    """

    kind: FilterKindChoice | None = Field(
        None, description=f"Selection rule: {', '.join(filters.FILTERS)} (default: the spec's filter.kind)."
    )
    alpha: float | None = Field(None, gt=0, le=1, description="quantile: keep the top alpha of each prompt's samples.")
    tau: float | None = Field(None, description="threshold: keep samples whose score is >= tau (one global cut).")
    k: int | None = Field(None, gt=0, description="topk: keep each prompt's k highest-scored samples.")
    beta: float | None = Field(None, gt=0, description="reweight: weight each sample by exp(score / beta).")
    ensemble: EnsembleChoice | None = Field(
        None,
        description="Several verifiers: and = each verifier's filter must keep it; mean / rank = filter the "
        "mean score / the mean within-prompt rank.",
    )
    empty: EmptyChoice | None = Field(
        None, description="A prompt with nothing kept: skip it, or keep its best-scored sample."
    )
    ties: TiesChoice | None = Field(
        None, description="quantile / topk: samples tied at the cut; keep them, or drop them when more than k reach it."
    )

    def apply(self, base: FilterSpec) -> FilterSpec:
        overrides = {k: getattr(v, "value", v) for k, v in self.model_dump().items() if v is not None}
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


def _not_empty(filtered: pa.Table, _: Mapping[str, Any]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=filtered.num_rows > 0, metadata={"rows": filtered.num_rows})


NOT_EMPTY = TableCheck("not_empty", "The filter kept at least one sample.", _not_empty)


def filtered_asset(exp: Experiment, r: int) -> dg.AssetsDefinition:
    spec = exp.spec
    methods = spec.verification.methods

    @stage_asset(
        key=exp.key("filtered", r),
        checks=[NOT_EMPTY],
        ins={
            "generations": dg.AssetIn(exp.key("generations", r)),
            "verifications": dg.AssetIn(exp.key("verifications", r)),
        },
        group_name=exp.group(r),
        kinds={"parquet"},
        code_version=CODE_VERSION,
        description=f"Round {r}: the samples the filter keeps, with weights. Spec filter: "
        f"{rule(spec.filter, methods)}; a launchpad config (FilterConfig) overrides it, and each setting is a "
        "row set of its own (column `variant`; the latest has `current`). Metadata `rule`: the filter used.",
    )
    def filtered(
        config: FilterConfig, warehouse: WarehouseResource, generations: pa.Table, verifications: pa.Table
    ) -> dg.Output[pa.Table]:
        f = config.apply(spec.filter)
        classes = answer_classes(exp.task, generations) if f.kind == "majority" else None
        table = filtered_rows(generations, verifications, methods, f, spec.verification.on_parse_failure, classes)
        correct = table.column("correct").to_pylist()
        key = variant_key(f, methods)
        table = table.append_column("filter_spec", pa.array([f.model_dump_json()] * table.num_rows, pa.string()))
        inputs = (generations, verifications)
        merged = beside_other_settings(warehouse.get(), "filtered", exp, r, table, key, CODE_VERSION, inputs)
        variants = sorted(set(merged.column("variant").to_pylist()))
        return output(
            merged,
            {
                "kept_fraction": table.num_rows / max(1, generations.num_rows),
                "kept_accuracy": sum(correct) / max(1, len(correct)),
                "rule": rule(f, methods),
                "variant": key,
                "variants": ", ".join(variants),
            },
            ["variant", "sample_id", "completion", "correct", "score", "weight"],
        )

    return filtered
