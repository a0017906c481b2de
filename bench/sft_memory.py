"""Peak memory of LoRA SFT on a real model, code before and after a change, side by side in one run.

    .venv/bin/python bench/sft_memory.py --before 800a207 [--experiment smollm2_word_arithmetic] [--examples 32]

Each variant runs in its own process (so `getrusage(RUSAGE_SELF).ru_maxrss` is that variant's peak):
- `load`: the experiment's base model loaded as the trainer loads it and wrapped in its LoRA config, no step;
- `before` / `after`: `trainer.train_lora` (load, LoRA, the spec's SFT update, save) for one epoch on the
  first --examples rows of the experiment's round-0 `filtered` table (the samples its SFT trains on), with the
  experiment's `distill` settings, from the code of git revision --before (extracted with `git archive`
  into a temporary folder) and from this checkout;
- `after, gradient checkpointing`: the same with `distill.gradient_checkpointing` (what activations cost).
Variants run in order load, before, after, after+gc, then again in reverse, so drift in the machine's load
hits them alike; the table gives each one's peak RSS (max over repeats) and seconds (median).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker(variant: str, experiment: str, examples: int, out: str) -> None:
    """One variant in this process; prints one JSON line (peak RSS in MiB, seconds)."""
    import torch

    from selfimprove.resources.warehouse import Warehouse
    from selfimprove.spec import load_spec
    from selfimprove.state import from_state, warehouse_root

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    spec = load_spec(ROOT / "experiments" / f"{experiment}.yaml")
    wh = Warehouse(warehouse_root())
    base = str(from_state(wh.read("base_model", experiment).to_pylist()[0]["path"]))
    # the current filter setting's rows (variants.current, by hand: the --before revision may predate it)
    rows = [r for r in wh.read("filtered", experiment, 0).to_pylist() if r.get("current", True)][:examples]
    distill = spec.distill.model_copy(update={"epochs": 1, "gradient_checkpointing": variant.endswith("gc")})
    start = time.perf_counter()
    if variant == "load":
        from peft import LoraConfig, get_peft_model

        from selfimprove.resources.models import load_model

        model, _ = load_model(base, dtype=distill.dtype)
        cfg = LoraConfig(r=distill.r, lora_alpha=distill.lora_alpha, target_modules=distill.target_modules)
        get_peft_model(model, cfg)
        loss = None
    else:
        from selfimprove.resources.trainer import train_lora
        from selfimprove.resources.updates import TrainExample

        data = [TrainExample(r["prompt"], r["completion"], r["weight"]) for r in rows]
        loss = train_lora(base, data, distill, out, seed=spec.seed)["loss_curve"]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    seconds = time.perf_counter() - start
    print(json.dumps({"variant": variant, "peak_rss_mib": peak_mib, "seconds": seconds, "loss": loss}))


def run(variant: str, src: Path, args: argparse.Namespace, tmp: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", variant, "--experiment", args.experiment]
    cmd += ["--examples", str(args.examples), "--out", str(tmp / f"{variant}-{time.monotonic_ns()}")]
    done = subprocess.run(cmd, env=env, cwd=os.getcwd(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    line = done.stdout.strip().splitlines()[-1]
    print(line, flush=True)
    return json.loads(line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", default="smollm2_word_arithmetic")
    p.add_argument("--examples", type=int, default=32)
    p.add_argument("--before", help="git revision whose code is the 'before' variant")
    p.add_argument("--repeats", type=int, default=1, help="passes over the variants (forward, then reverse)")
    p.add_argument("--skip-gc", action="store_true", help="leave out the gradient-checkpointing variant")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker, args.experiment, args.examples, args.out)
        return
    sys.path.insert(0, str(ROOT / "bench"))
    from machine import describe

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        variants = [("load", ROOT), ("after", ROOT)] + ([] if args.skip_gc else [("after, gc", ROOT)])
        if args.before:
            old = tmp / "before"
            old.mkdir()
            archive = subprocess.run(["git", "archive", args.before, "selfimprove"], cwd=ROOT, capture_output=True)
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
            variants.insert(1, ("before", old))
        results: dict[str, list[dict]] = {}
        for rep in range(args.repeats):
            for name, src in variants if rep % 2 == 0 else variants[::-1]:
                results.setdefault(name, []).append(run(name.replace(", ", "_"), src, args, tmp))
    print(f"\n{describe(load_before)}; {args.examples} examples of {args.experiment}, one epoch\n")
    print("| variant | peak RSS (GiB) | seconds | loss per step |\n|---|---:|---:|---|")
    for name, runs in results.items():
        peak = max(r["peak_rss_mib"] for r in runs) / 1024
        secs = statistics.median(r["seconds"] for r in runs)
        print(f"| {name} | {peak:.2f} | {secs:.0f} | {runs[0]['loss']} |")


if __name__ == "__main__":
    main()
