"""The gap asset: J(f), J(f[w]), the gap and the relative gap per verifier x filter, with CIs."""

from __future__ import annotations

import math

import dagster as dg
import numpy as np
import pyarrow as pa

from selfimprove import metrics
from selfimprove.assets.common import Experiment, output
from selfimprove.assets.scoring import ENSEMBLE, MAJORITY, answer_classes, combined, method_scores, rule
from selfimprove.spec import ExperimentSpec, FilterSpec

CODE_VERSION = "2"  # 2: tie rule in the per-prompt filters, the majority-vote row


def filter_family(spec: ExperimentSpec) -> list[FilterSpec]:
    """The configured filter first, then the other two families at the spec's parameters (majority aside)."""
    first = [spec.filter.kind] if spec.filter.kind != "majority" else []
    kinds = first + [k for k in ("quantile", "threshold", "topk") if k != spec.filter.kind]
    return [spec.filter.model_copy(update={"kind": k}) for k in kinds]


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
    spec: ExperimentSpec, generations: pa.Table, verifications: pa.Table, classes: np.ndarray | None = None
) -> pa.Table:
    """One row per verifier x filter, plus the majority vote (`majority` x `majority`) when `classes` is given."""
    prompt_ids = generations.column("prompt_id").to_pylist()
    correct = np.asarray(generations.column("correct").to_pylist(), dtype=float)
    methods = spec.verification.methods
    scores = method_scores(generations, verifications, methods, spec.verification.on_parse_failure)
    scores.setdefault("oracle", correct)
    ok_rate = {m: _parse_failure_rate(verifications, m) for m in methods}
    settings = [(name, members, f) for name, members in candidates(spec) for f in filter_family(spec)]
    if classes is not None:
        settings.append((MAJORITY, [], spec.filter.model_copy(update={"kind": "majority"})))
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
                "configured": f == spec.filter and (name == configured_name or f.kind == "majority"),
                **res.columns(),
                "auroc_within_prompt": auc,
                "n_mixed_prompts": n_mixed,
                "auroc_pooled": metrics.auroc(score, correct),
                "parse_failure_rate": max((ok_rate.get(m, 0.0) for m in members), default=0.0),
            }
        )
    return pa.Table.from_pylist(rows)


def _parse_failure_rate(verifications: pa.Table, method: str) -> float:
    ok = [r["ok"] for r in verifications.select(["method", "ok"]).to_pylist() if r["method"] == method]
    return 1 - sum(ok) / len(ok) if ok else math.nan


def headline(gap: pa.Table) -> dict[str, float]:
    row = next(r for r in gap.to_pylist() if r["configured"])
    keys = ("j_f", "j_fw", "gap", "gap_lo", "gap_hi", "relative_gap", "kept_fraction", "auroc_within_prompt")
    return {k: row[k] for k in keys}


def gap_asset(exp: Experiment, r: int) -> dg.AssetsDefinition:
    @dg.asset(
        key=exp.key("gap", r),
        ins={
            "generations": dg.AssetIn(exp.key("generations", r)),
            "verifications": dg.AssetIn(exp.key("verifications", r)),
        },
        group_name=exp.group(r),
        kinds={"parquet"},
        code_version=CODE_VERSION,
        description=f"Round {r}: the generation-verification gap per verifier x filter, with bootstrap CIs.",
    )
    def gap(generations: pa.Table, verifications: pa.Table) -> dg.Output[pa.Table]:
        table = gap_rows(exp.spec, generations, verifications, answer_classes(exp.task, generations))
        return output(table, headline(table), ["verifier", "filter", "j_f", "j_fw", "gap", "relative_gap"])

    return gap
