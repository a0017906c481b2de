"""Model FLOPs utilisation of generation and LoRA training against this machine's measured fp32 matmul peak.

    .venv/bin/python bench/mfu.py [--size default] [--prompts 64] [--n 8] [--train 512] [--repeats 3] [--threads 1]

In one process, interleaved (A B, B A, ...), medians:

- **peak**: fp32 `torch.mm` of two 1024x1024 matrices (2·1024³ FLOPs), at `--threads` torch threads.
- **generation**: `TransformersEngine.generate` (batched, n samples per prompt) with the shared prompt
  prefill and with one prefill per sample (`engine.share_prefill = False`); both must return the same rows.
  Useful FLOPs = 2·P·(tokens of each distinct prompt once + generated tokens), P = the parameters of the
  model's linear layers (lm_head included; embeddings and attention scores left out).
- **training**: `train_lora` (1 epoch, the demo's LoRA settings) on `--train` generated samples, with
  batches grouped by length and with plain shuffled batches. Useful FLOPs = 4·P·(non-padding tokens):
  the forward pass and the input gradients of the frozen base (the LoRA matrices are left out).

MFU = useful FLOPs per second / peak. Prints a Markdown table with the machine, load and date.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import describe  # noqa: E402

from selfimprove.resources.batching import length_batches, padding_share, shuffled_batches  # noqa: E402
from selfimprove.resources.engine import Sampling  # noqa: E402
from selfimprove.resources.trainer import train_lora  # noqa: E402
from selfimprove.resources.transformers_engine import TransformersEngine  # noqa: E402
from selfimprove.resources.updates.sft import TrainExample, encode  # noqa: E402
from selfimprove.spec import DistillSpec  # noqa: E402
from selfimprove.tasks.arithmetic import ArithmeticTask  # noqa: E402
from selfimprove.toy.pretrain import ensure_pretrained  # noqa: E402


def peak_flops(size: int = 1024, iters: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(iters):
        torch.mm(a, b)
    return 2 * size**3 * iters / (time.perf_counter() - start)


def linear_params(model: torch.nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="default")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--train", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="mfu_"))
    path = ensure_pretrained(args.size, work / "cache")
    engine = TransformersEngine.from_path(path, batch_size=args.prompts * args.n)
    p = linear_params(engine.model)
    task = ArithmeticTask()
    prompts = [task.generation_prompt(q) for q in task.load(args.prompts, seed=0)]
    sampling = Sampling(temperature=0.8, max_new_tokens=args.max_new_tokens)
    prompt_tokens = sum(len(engine.encode(t)) for t in prompts)
    spec = DistillSpec(epochs=1)
    times: dict[str, list[float]] = {}
    work_done: dict[str, float] = {}
    pads: dict[str, float] = {}
    gens = None
    for r in range(args.repeats):
        for mode in (
            ("shared prefill", "prefill per sample") if r % 2 == 0 else ("prefill per sample", "shared prefill")
        ):
            times.setdefault("peak", []).append(peak_flops())
            engine.share_prefill = mode == "shared prefill"
            start = time.perf_counter()
            out = engine.generate(prompts, args.n, sampling, seed=0)
            times.setdefault(f"generation, {mode}", []).append(time.perf_counter() - start)
            rows = [(g.prompt_index, g.sample_index, g.text) for g in out]
            assert gens is None or rows == [(g.prompt_index, g.sample_index, g.text) for g in gens], "rows differ"
            gens = out
            work_done[f"generation, {mode}"] = 2 * p * (prompt_tokens + sum(g.num_tokens for g in out))
        examples = [TrainExample(prompts[g.prompt_index], g.text) for g in gens[: args.train]]  # type: ignore[index]
        encoded = [encode(engine.tokenizer, ex) for ex in examples]
        lengths = [len(x) for x, _ in encoded]
        for grouped in (True, False) if r % 2 == 0 else (False, True):
            mode = "training, batches by length" if grouped else "training, shuffled batches"
            s = spec.model_copy(update={"group_by_length": grouped})
            manifest = train_lora(path, examples, s, work / f"lora_{r}_{grouped}", seed=0)
            times.setdefault(mode, []).append(manifest["train_seconds"])
            g = torch.Generator().manual_seed(0)
            batches = (
                length_batches(lengths, s.batch_size, g) if grouped else shuffled_batches(len(lengths), s.batch_size, g)
            )
            pads[mode] = padding_share(lengths, batches)
            work_done[mode] = 4 * p * sum(lengths)
    peak = statistics.median(times.pop("peak"))
    print(describe(load_before[0]))
    print(
        f"model: {args.size} toy checkpoint, {p / 1e6:.2f}M linear parameters; {args.prompts} prompts x n={args.n}, "
        f"max {args.max_new_tokens} new tokens; training on {len(lengths)} samples, 1 epoch; {args.repeats} repeats\n"
    )
    print(f"Measured fp32 matmul peak (1024x1024 mm, median of {args.repeats * 2}): **{peak / 1e9:.1f} GFLOP/s**\n")
    print("| work | seconds per repeat | median s | useful GFLOP | GFLOP/s | MFU | padding share |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for mode, ts in times.items():
        med = statistics.median(ts)
        rate = work_done[mode] / med
        pad = f"{pads[mode]:.1%}" if mode in pads else "–"
        print(
            f"| {mode} | {', '.join(f'{t:.2f}' for t in ts)} | {med:.2f} | {work_done[mode] / 1e9:.2f} | "
            f"{rate / 1e9:.2f} | {rate / peak:.1%} | {pad} |"
        )


if __name__ == "__main__":
    main()
