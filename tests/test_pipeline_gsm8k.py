"""GSM8K through the Dagster pipeline with the embedded micro model: plumbing, not accuracy."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from selfimprove.definitions import build_definitions
from selfimprove.resources.warehouse import Warehouse
from tests.conftest import micro_spec


def test_gsm8k_plumbing(micro_model: Path, tmp_path: Path) -> None:
    spec = micro_spec(
        rounds=1,
        task={"name": "gsm8k", "train_prompts": 3, "eval_prompts": 2, "options": {"shots": 2}},
        generation={"n": 2, "temperature": 1.0, "max_new_tokens": 24, "shard_prompts": 2},
    )
    defs = build_definitions([spec], root=str(tmp_path))
    result = defs.resolve_job_def("micro_job").execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    wh = Warehouse(str(tmp_path))
    prompts = wh.read("prompts", "micro")
    train = [r for r in prompts.to_pylist() if r["split"] == "train"]
    assert len(train) == 3
    # 2-shot natural-language prompts that end where the model must answer the asked question
    for r in train:
        assert r["prompt"].count("\n\nQuestion: ") == 2 + 1  # two shots, then the asked question
        assert r["prompt"].endswith(f"Question: {r['question']}\nAnswer:")
    assert all(r["reference"].lstrip("-").replace(".", "").isdigit() for r in prompts.to_pylist())
    gens = wh.read("generations", "micro", 0)
    assert gens.num_rows == 3 * 2
    assert set(gens.column("correct").to_pylist()) <= {True, False}
    assert set(gens.column("finish_reason").to_pylist()) <= {"eos", "stop", "length"}
    evals = wh.read("eval", "micro", 1)
    assert evals.num_rows == 2 * (1 + 2)
