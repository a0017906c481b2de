"""One round of each distillation update on the same samples: SFT (the demo's round-0 checkpoint) against DPO and
RPO on pairs from the same CoT-Binary ranking, compared by held-out greedy accuracy (docs/results.md, section 5).

Needs the demo's round 0 in the warehouse (`selfimprove demo`, or its round-0 assets). Trains DPO and RPO with
the demo's distill settings from the base model (round 0 starts from it), then decodes the 200 held-out
prompts greedily with each model:

    .venv/bin/python bench/update_quality.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from selfimprove.assets.checkpoints import training_data
from selfimprove.assets.common import Experiment
from selfimprove.assets.pairs import pair_rows
from selfimprove.assets.sampling import problems_of, sample_and_grade, task_sampling
from selfimprove.definitions import warehouse_root
from selfimprove.resources.engine import Sampling
from selfimprove.resources.trainer import train_lora
from selfimprove.resources.transformers_engine import TransformersEngine
from selfimprove.resources.warehouse import Warehouse
from selfimprove.spec import load_spec

REPO = Path(__file__).resolve().parents[1]


def greedy_accuracy(exp: Experiment, path: str, prompts) -> float:
    engine = TransformersEngine.from_path(path, batch_size=exp.spec.model.batch_size)
    table = sample_and_grade(
        engine=engine,
        task=exp.task,
        problems=problems_of(prompts, "eval"),
        n=1,
        sampling=task_sampling(exp.task, Sampling(0.0, 1.0, exp.spec.generation.max_new_tokens)),
        seed=exp.spec.seed,
        id_prefix="bench/greedy",
        code_version="bench",
        cached=None,
        shard_prompts=1000,
        extra={"mode": "greedy"},
    )
    engine.close()
    correct = table.column("correct").to_pylist()
    return sum(correct) / len(correct)


def main() -> None:
    spec = load_spec(REPO / "experiments" / "demo.yaml")
    exp = Experiment(spec)
    wh = Warehouse(warehouse_root())
    g, v = wh.read("generations", "demo", 0), wh.read("verifications", "demo", 0)
    prompts = wh.read("prompts", "demo")
    base = wh.read("base_model", "demo").to_pylist()[0]["path"]
    sft = wh.read("checkpoint", "demo", 0).to_pylist()[0]
    rows = [("base (round-0 model)", base, "", None), ("sft", sft["path"], f"{sft['n_examples']} samples", None)]
    out = Path(tempfile.mkdtemp(prefix="update_quality-"))
    for update in ("dpo", "rpo"):
        s = spec.model_copy(update={"distill": spec.distill.model_copy(update={"update": update})})
        pairs = pair_rows(s, g, v, None)
        chosen, rejected = pairs.column("chosen_correct").to_pylist(), pairs.column("rejected_correct").to_pylist()
        right = sum(a and not b for a, b in zip(chosen, rejected, strict=True))
        start = time.perf_counter()
        m = train_lora(base, training_data(update, pairs), s.distill, out / update, seed=spec.seed)
        seconds = time.perf_counter() - start
        note = f"{pairs.num_rows} pairs ({right / pairs.num_rows:.0%} right over wrong), {seconds:.0f} s"
        rows.append((update, m["path"], note, m["loss_curve"][-1]))
    print("| model | trained on | held-out greedy accuracy |")
    print("|---|---|---:|")
    for name, path, note, _ in rows:
        print(f"| {name} | {note} | {greedy_accuracy(exp, path, prompts):.3f} |", flush=True)


if __name__ == "__main__":
    main()
