"""One round of each distillation update on the same samples, side by side: SFT (experiments/demo.yaml) against
DPO (demo_dpo, demo_dpo_gentle) and RPO (demo_rpo) on pairs from the same CoT-Binary ranking, each trained here
from the base model with its experiment's distill settings, compared by held-out greedy accuracy (docs/results.md,
section 5) and training time (printed; no table in docs/benchmarks.md yet).

Needs round 0 of one of these experiments in the warehouse (`selfimprove demo`; they share the model, seed and
filter, so their round-0 samples are the same; `--samples NAME` picks another than the demo). Each row retrains what
the experiment's round-0 checkpoint trained (same samples, settings and seed) and, where that experiment has run,
says whether the weights equal its stored checkpoint's. Experiments to compare as arguments (default: all four):

    nice .venv/bin/python bench/update_quality.py [--samples demo_rpo] [demo demo_dpo demo_dpo_gentle demo_rpo]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from machine import describe

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
from selfimprove.state import from_state
from selfimprove.variants import current

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("demo", "demo_dpo", "demo_dpo_gentle", "demo_rpo")


def greedy_accuracy(exp: Experiment, path: str | Path, prompts) -> float:
    engine = TransformersEngine.from_path(from_state(path), batch_size=exp.spec.model.batch_size)
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


def stored_digest(wh: Warehouse, name: str) -> str | None:
    """The weight digest of experiment `name`'s round-0 checkpoint, if it has one."""
    if not wh.exists("checkpoint", name, 0):
        return None
    return wh.read("checkpoint", name, 0).to_pylist()[0]["weight_digest"]


def main(names: list[str], samples: str) -> None:
    load_before = os.getloadavg()[0]
    demo = Experiment(load_spec(REPO / "experiments" / "demo.yaml"))
    wh = Warehouse(warehouse_root())
    g, v = wh.read("generations", samples, 0), wh.read("verifications", samples, 0)
    prompts = wh.read("prompts", samples)
    base = wh.read("base_model", samples).to_pylist()[0]["path"]
    filtered = current(wh.read("filtered", samples, 0))
    out = Path(tempfile.mkdtemp(prefix="update_quality-"))
    rows = [("base (the round-0 model)", "", "", "", "", greedy_accuracy(demo, base, prompts))]
    print(rows[0], flush=True)
    for name in names:
        spec = load_spec(REPO / "experiments" / f"{name}.yaml")
        d = spec.distill
        if d.update == "sft":
            table, data = filtered, f"{filtered.num_rows} kept samples"
        else:
            table = pair_rows(spec, g, v, None)
            chosen, rejected = table.column("chosen_correct").to_pylist(), table.column("rejected_correct").to_pylist()
            right = sum(a and not b for a, b in zip(chosen, rejected, strict=True))
            data = f"{table.num_rows} pairs ({right / table.num_rows:.0%} right over wrong)"
        start = time.perf_counter()
        m = train_lora(from_state(base), training_data(d.update, table), d, out / name, seed=spec.seed)
        seconds = time.perf_counter() - start
        stored = stored_digest(wh, name)
        if stored is not None:
            data += f", weights {'equal to' if m['weight_digest'] == stored else 'DIFFERENT from'} {name}'s round 0"
        setting = f"{d.update}, lr {d.learning_rate:g}" + ("" if d.update == "sft" else f", beta {d.beta:g}")
        acc = greedy_accuracy(demo, m["path"], prompts)
        rows.append((name, setting, data, str(len(m["loss_curve"])), f"{seconds:.0f}", acc))
        print(rows[-1], flush=True)
    print("\n| experiment's update | setting | trained on | steps | train s | held-out greedy accuracy |")
    print("|---|---|---|---:|---:|---:|")
    for name, setting, data, steps, seconds, acc in rows:
        print(f"| {name} | {setting} | {data} | {steps} | {seconds} | {acc:.3f} |")
    print(f"\n{describe(load_before)}")


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # no `choices` on the list: argparse would check the default list itself against them and refuse it
    cli.add_argument("experiments", nargs="*", default=list(EXPERIMENTS), help=f"of {', '.join(EXPERIMENTS)}")
    cli.add_argument("--samples", default="demo", choices=EXPERIMENTS, help="whose round-0 samples to train on")
    args = cli.parse_args()
    if unknown := set(args.experiments) - set(EXPERIMENTS):
        cli.error(f"unknown experiment(s) {sorted(unknown)}; choose from {', '.join(EXPERIMENTS)}")
    main(args.experiments, args.samples)
