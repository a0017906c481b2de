"""The gap asset: J(f), J(f[w]), the gap and the relative gap per verifier x filter, with CIs; its checks: a gap
not at or below 0, and parseable verifier output."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa

from selfimprove import metrics
from selfimprove.assets.checked import TableCheck, stage_asset
from selfimprove.assets.common import Experiment, beside_other_settings, output
from selfimprove.assets.scoring import (
    ENSEMBLE,
    MAJORITY,
    answer_classes,
    combined,
    method_scores,
    parse_failure_rates,
    prompt_codes,
    rule,
)
from selfimprove.resources.io_manager import WarehouseResource
from selfimprove.spec import ExperimentSpec, FilterSpec, GapSpec
from selfimprove.variants import variant_key

CODE_VERSION = "3"  # 2: tie rule, the majority-vote row; 3: follows the filter used, variants side by side


def filter_family(used: FilterSpec) -> list[FilterSpec]:
    """The filter used first, then the other two families at its parameters (majority aside)."""
    first = [used.kind] if used.kind != "majority" else []
    kinds = first + [k for k in ("quantile", "threshold", "topk") if k != used.kind]
    return [used.model_copy(update={"kind": k}) for k in kinds]


def candidates(spec: ExperimentSpec) -> list[tuple[str, list[str]]]:
    """(name, member methods) of every verifier the gap reports: each method, their ensemble, the oracle."""
    methods = spec.verification.methods
    out: list[tuple[str, list[str]]] = [(m, [m]) for m in methods]
    if len(methods) > 1:
        out.append((ENSEMBLE, methods))
    if "oracle" not in methods:
        out.append(("oracle", ["oracle"]))
    return out


def gap_rows(
    spec: ExperimentSpec,
    generations: pa.Table,
    verifications: pa.Table,
    classes: np.ndarray | None = None,
    used: FilterSpec | None = None,
) -> pa.Table:
    """One row per verifier x filter, plus the majority vote (`majority` x `majority`) when `classes` is given;
    `configured` marks the main verifier with the filter `used` (default: the spec's filter)."""
    used = used or spec.filter
    prompt_ids = prompt_codes(generations)
    correct = np.asarray(generations.column("correct").to_pylist(), dtype=float)
    methods = spec.verification.methods
    scores = method_scores(generations, verifications, methods, spec.verification.on_parse_failure)
    scores.setdefault("oracle", correct)
    failed = parse_failure_rates(verifications)
    failure_rate = {m: failed.get(m, math.nan) for m in methods}  # NaN: a configured method without rows
    settings = [(name, members, f) for name, members in candidates(spec) for f in filter_family(used)]
    if classes is not None:
        settings.append((MAJORITY, [], used.model_copy(update={"kind": "majority"})))
    configured_name = ENSEMBLE if len(methods) > 1 else methods[0]
    rows = []
    for name, members, f in settings:
        score, weight = combined(prompt_ids, {m: scores[m] for m in members}, f, classes)
        res = metrics.gap_with_ci(prompt_ids, correct, weight, n_boot=spec.gap.bootstrap, seed=spec.seed)
        auc, n_mixed = metrics.within_prompt_auroc(prompt_ids, score, correct)
        rows.append(
            {
                "verifier": name,
                "filter": f.kind,
                "rule": rule(f, members),
                "configured": f == used and (name == configured_name or f.kind == "majority"),
                **res.columns(),
                "auroc_within_prompt": auc,
                "n_mixed_prompts": n_mixed,
                "auroc_pooled": metrics.auroc(score, correct),
                "parse_failure_rate": max((failure_rate.get(m, 0.0) for m in members), default=0.0),
            }
        )
    return pa.Table.from_pylist(rows)


def headline(gap: pa.Table) -> dict[str, float]:
    """The main verifier's gap with the filter used by the latest materialization."""
    row = configured_row(gap)
    keys = ("j_f", "j_fw", "gap", "gap_lo", "gap_hi", "relative_gap", "kept_fraction", "auroc_within_prompt")
    return {k: row[k] for k in keys}


def configured_row(gap: pa.Table) -> dict[str, Any]:
    return next(r for r in gap.to_pylist() if r["configured"])


def used_filter(filtered: pa.Table, default: FilterSpec) -> FilterSpec:
    """The filter setting of `filtered` (its latest materialization's rows; `default` when it kept nothing)."""
    if filtered.num_rows == 0 or "filter_spec" not in filtered.column_names:
        return default
    return FilterSpec.model_validate_json(filtered.column("filter_spec")[0].as_py())


def gap_checks(cfg: GapSpec, r: int) -> list[TableCheck]:
    """`gap_positive` (blocking with gap.block_distill_if_gap_le_zero) and `parse_failure_rate` (blocking)."""
    blocking = cfg.block_distill_if_gap_le_zero

    def gap_positive(gap: pa.Table, _: Mapping[str, Any]) -> dg.AssetCheckResult:
        h = headline(gap)
        return dg.AssetCheckResult(
            passed=not h["gap_hi"] <= 0,  # a CI straddling 0 is not evidence of a non-positive gap
            severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
            description=f"gap {h['gap']:+.3f} [95% CI {h['gap_lo']:+.3f}, {h['gap_hi']:+.3f}]",
            metadata={k: round(h[k], 4) for k in ("gap", "gap_lo", "gap_hi")},
        )

    def parse_failures(gap: pa.Table, _: Mapping[str, Any]) -> dg.AssetCheckResult:
        rates = {
            r["verifier"]: r["parse_failure_rate"]
            for r in gap.to_pylist()
            if r["parse_failure_rate"] == r["parse_failure_rate"]
        }
        worst = max(rates, key=lambda v: rates[v]) if rates else ""
        rate, limit = rates.get(worst, 0.0), cfg.max_parse_failure_rate
        passed = rate <= limit
        why = (
            f"round {r}: {rate:.0%} of {worst} verifier outputs are unparseable (limit {limit:.0%}); distillation "
            "stopped. Check verification.style and templates, or raise gap.max_parse_failure_rate."
        )
        return dg.AssetCheckResult(
            passed=bool(passed),
            severity=dg.AssetCheckSeverity.ERROR,
            description=None if passed else why,
            metadata={"parse_failure_rate": rate, "limit": limit, "verifier": worst},
        )

    positive = "The main verifier with the filter used does not give a gap <= 0: fails when the gap's prompt-bootstrap "
    positive += "95% CI lies at or below 0" + (
        "; blocking (gap.block_distill_if_gap_le_zero): a failure stops this round's distillation."
        if blocking
        else "; a warning only: set gap.block_distill_if_gap_le_zero to stop distillation when it fails."
    )
    return [
        TableCheck("gap_positive", positive, gap_positive, blocking=blocking),
        TableCheck(
            "parse_failure_rate",
            "Unparseable verifier output stays below the spec's limit (gap.max_parse_failure_rate); above it, this "
            "round's distillation is stopped: the scores would be the fallback, not the verifier's.",
            parse_failures,
        ),
    ]


def gap_asset(exp: Experiment, r: int, follow_filtered: bool = True) -> dg.AssetsDefinition:
    """Round r's gap; with `follow_filtered` it reads `filtered` and follows the filter that made it, else
    (a study's measurement, which has no filtered stage) it uses the spec's filter."""
    methods = exp.spec.verification.methods

    @stage_asset(
        key=exp.key("gap", r),
        checks=gap_checks(exp.spec.gap, r),
        ins={
            "generations": dg.AssetIn(exp.key("generations", r)),
            "verifications": dg.AssetIn(exp.key("verifications", r)),
        }
        | ({"filtered": dg.AssetIn(exp.key("filtered", r))} if follow_filtered else {}),
        group_name=exp.group(r),
        kinds={"parquet"},
        code_version=CODE_VERSION,
        description=f"Round {r}: the generation-verification gap per verifier x filter family, with bootstrap CIs, "
        "for the filter setting `filtered` was last materialized with (each setting a row set of its own, column "
        "`variant`); `configured` marks the main verifier with that filter.",
    )
    def gap(warehouse: WarehouseResource, **tables: pa.Table) -> dg.Output[pa.Table]:
        generations, verifications = tables["generations"], tables["verifications"]
        used = used_filter(tables["filtered"], exp.spec.filter) if follow_filtered else exp.spec.filter
        classes = answer_classes(exp.task, generations)
        table = gap_rows(exp.spec, generations, verifications, classes, used)
        key = variant_key(used, methods)
        inputs = (generations, verifications)
        merged = beside_other_settings(warehouse.get(), "gap", exp, r, table, key, CODE_VERSION, inputs)
        meta: dict[str, Any] = {**headline(table), "rule": rule(used, methods), "variant": key}
        cols = ["variant", "verifier", "filter", "j_f", "j_fw", "gap", "relative_gap"]
        return output(merged, meta, cols)

    return gap
