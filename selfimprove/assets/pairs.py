"""The pairs asset (preference updates only): (chosen, rejected) completions of each prompt from the
verifier's ranking, as `preferences.preference_pairs` draws them from what the configured filter keeps."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pyarrow as pa

from selfimprove.assets.common import Experiment, output
from selfimprove.assets.scoring import answer_classes, rule, selection
from selfimprove.preferences import preference_pairs
from selfimprove.spec import ExperimentSpec

CODE_VERSION = "1"


def pair_rows(
    spec: ExperimentSpec, generations: pa.Table, verifications: pa.Table, classes: np.ndarray | None
) -> pa.Table:
    f = spec.filter
    methods = spec.verification.methods
    score, weight = selection(generations, verifications, methods, f, spec.verification.on_parse_failure, classes)
    g = generations.select(["sample_id", "prompt_id", "prompt", "completion", "correct"]).to_pylist()
    pairs = preference_pairs(
        [x["prompt_id"] for x in g], score, weight, spec.distill.pairs_per_prompt, [x["completion"] for x in g]
    )
    rows = [
        {
            "prompt_id": g[c]["prompt_id"],
            "prompt": g[c]["prompt"],
            "chosen": g[c]["completion"],
            "rejected": g[r]["completion"],
            "chosen_sample_id": g[c]["sample_id"],
            "rejected_sample_id": g[r]["sample_id"],
            "chosen_score": float(score[c]),
            "rejected_score": float(score[r]),
            "chosen_correct": g[c]["correct"],
            "rejected_correct": g[r]["correct"],
            "rule": rule(f, methods),
            "seed": spec.seed,
        }
        for c, r in pairs
    ]
    schema = pa.schema(
        [
            ("prompt_id", pa.string()),
            ("prompt", pa.string()),
            ("chosen", pa.string()),
            ("rejected", pa.string()),
            ("chosen_sample_id", pa.string()),
            ("rejected_sample_id", pa.string()),
            ("chosen_score", pa.float64()),
            ("rejected_score", pa.float64()),
            ("chosen_correct", pa.bool_()),
            ("rejected_correct", pa.bool_()),
            ("rule", pa.string()),
            ("seed", pa.int64()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def pairs_asset(exp: Experiment, r: int) -> dg.AssetsDefinition:
    spec = exp.spec

    @dg.asset(
        key=exp.key("pairs", r),
        ins={
            "generations": dg.AssetIn(exp.key("generations", r)),
            "verifications": dg.AssetIn(exp.key("verifications", r)),
        },
        group_name=exp.group(r),
        kinds={"parquet"},
        code_version=CODE_VERSION,
        description=f"Round {r}: (chosen, rejected) pairs from {rule(spec.filter, spec.verification.methods)} "
        f"within each prompt, at most {spec.distill.pairs_per_prompt} per prompt, "
        f"for the {spec.distill.update} update.",
    )
    def pairs(generations: pa.Table, verifications: pa.Table) -> dg.Output[pa.Table]:
        classes = answer_classes(exp.task, generations) if spec.filter.kind == "majority" else None
        table = pair_rows(spec, generations, verifications, classes)
        cc, rc = table.column("chosen_correct").to_pylist(), table.column("rejected_correct").to_pylist()
        informative = sum(c and not x for c, x in zip(cc, rc, strict=True))
        inverted = sum(x and not c for c, x in zip(cc, rc, strict=True))
        return output(
            table,
            {
                "pairs": table.num_rows,
                "prompts_with_pairs": len(set(table.column("prompt_id").to_pylist())),
                "right_over_wrong": informative / max(1, table.num_rows),  # chosen right, rejected wrong
                "wrong_over_right": inverted / max(1, table.num_rows),
            },
            ["prompt_id", "chosen", "rejected", "chosen_score", "rejected_score", "chosen_correct", "rejected_correct"],
        )

    return pairs
