"""Issue 14.2: correcting a dataset's reference answer re-grades cached rows, without generating again.

A custom task (JSONL) through real Dagster runs on the micro model: after one reference is changed to a
sample's extracted answer, the rerun reuses every completion and every model verification, but the
sample is now correct (and so is the oracle's verdict on it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

import selfimprove.resources.engines as engines_mod
from selfimprove.resources.engine import Engine
from selfimprove.resources.engines import EngineResource, open_engine
from selfimprove.resources.warehouse import Warehouse
from tests.test_caching import CountingEngine, materialize, meta

QUESTIONS = [f"What is {a} plus {b}?" for a in range(1, 5) for b in range(1, 4)]


def write_data(path: Path, answers: dict[str, str]) -> None:
    rows = [{"question": q, "answer": answers.get(q, str(sum(map(int, q[8:-1].split(" plus ")))))} for q in QUESTIONS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_corrected_reference_regrades_cached_rows(
    micro_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import MICRO_SPEC, micro_spec

    data = tmp_path / "data.jsonl"
    write_data(data, {})
    task = {
        "name": "custom",
        "train_prompts": 4,
        "eval_prompts": 2,
        # no shots: a shot shows a reference answer, so correcting one would change those prompts (and their samples)
        "options": {
            "name": "sums",
            "path": str(data),
            "question_field": "question",
            "answer_field": "answer",
            "shots": 0,
        },
    }
    generation = {**MICRO_SPEC["generation"], "n": 4}  # type: ignore[dict-item]
    spec = micro_spec(task=task, generation=generation, verification={"methods": ["mc", "oracle"], "max_new_tokens": 8})
    keys = {dg.AssetKey(["micro", s]) for s in ("base_model", "prompts")}
    gen, ver = dg.AssetKey(["micro", "round_0", "generations"]), dg.AssetKey(["micro", "round_0", "verifications"])
    root = tmp_path / "warehouse"
    materialize(spec, root, {*keys, gen, ver})
    wh = Warehouse(root)
    before = wh.read("generations", "micro", 0).to_pylist()
    wrong = next(r for r in before if r["answer"] and not r["correct"])
    prompts = {r["prompt_id"]: r["question"] for r in wh.read("prompts", "micro").to_pylist()}
    write_data(data, {prompts[wrong["prompt_id"]]: wrong["answer"]})  # the dataset's answer is corrected

    EngineResource().release()
    counts = {"constructed": 0, "generated": 0, "scored": 0}

    def counting_open(path: str | Path, model: Any) -> Engine:
        counts["constructed"] += 1
        return CountingEngine(open_engine(path, model), counts)  # type: ignore[return-value]

    monkeypatch.setattr(engines_mod, "open_engine", counting_open)
    result = materialize(spec, root, {*keys, gen, ver})
    assert counts == {"constructed": 0, "generated": 0, "scored": 0}  # nothing generated, nothing verified again
    after = {r["sample_id"]: r for r in wh.read("generations", "micro", 0).to_pylist()}
    assert after[wrong["sample_id"]]["correct"] is True
    same_prompt = [r for r in before if r["prompt_id"] == wrong["prompt_id"]]
    for r in same_prompt:  # every sample of that prompt graded against the new reference
        assert after[r["sample_id"]]["correct"] == (r["answer"] == wrong["answer"])
        assert after[r["sample_id"]]["completion"] == r["completion"]
    others = [r for r in before if r["prompt_id"] != wrong["prompt_id"]]
    assert all(after[r["sample_id"]]["correct"] == r["correct"] for r in others)
    oracle = {
        r["sample_id"]: r["score"] for r in wh.read("verifications", "micro", 0).to_pylist() if r["method"] == "oracle"
    }
    assert oracle[wrong["sample_id"]] == 1.0
    flipped = sum(after[r["sample_id"]]["correct"] != r["correct"] for r in before)
    assert flipped >= 1 and meta(result, ver, "computed_rows") == flipped  # only oracle rows whose grade changed
