"""Samples/s of the transformers engine at batch size 1 vs batched, side by side in one run.

    python bench/generation_throughput.py --size default --batch-size 512 --repeats 3 --threads 1

Both modes run on the same loaded model, the same prompts (arithmetic generation prompts) and the
same sampling (n samples per prompt, KV cache on in both). Repeats are interleaved (A B, B A, A B, ...)
so drift in machine load hits both modes alike; the table reports medians and the ratio of medians.
By the engine contract both modes must return identical samples, which the run also checks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from machine import describe

from selfimprove.resources.engine import Sampling
from selfimprove.resources.transformers_engine import TransformersEngine
from selfimprove.state import MODEL_MANIFEST  # noqa: E402
from selfimprove.tasks.arithmetic import ArithmeticTask
from selfimprove.toy.pretrain import ensure_pretrained

log = logging.getLogger(__name__)


def resolve_model(model: str, size: str, cache: str) -> Path:
    """An explicit checkpoint folder, else the packaged/cached toy checkpoint of `size` (trained if missing)."""
    if model:
        return Path(model)
    log.info("resolving toy size %r (pretrains into %s if neither packaged nor cached)", size, cache)
    return ensure_pretrained(size, cache)


def timed(engine: TransformersEngine, prompts: list[str], n: int, sampling: Sampling, seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    gens = engine.generate(prompts, n, sampling, seed)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "samples": len(gens), "tokens": sum(g.num_tokens for g in gens), "gens": gens}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    sps = [r["samples"] / r["seconds"] for r in runs]
    tps = [r["tokens"] / r["seconds"] for r in runs]
    return {
        "samples": runs[0]["samples"],
        "tokens": runs[0]["tokens"],
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "median_samples_per_s": statistics.median(sps),
        "median_tokens_per_s": statistics.median(tps),
        "samples_per_s": sps,
    }


def table(summary: dict[str, dict[str, Any]], batch_sizes: dict[str, int], ratio: float) -> str:
    head = [
        "mode",
        "batch size",
        "samples",
        "tokens",
        "median s",
        "samples/s (median)",
        "tokens/s",
        "samples/s per repeat",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for mode, s in summary.items():
        cells = [
            mode,
            str(batch_sizes[mode]),
            str(s["samples"]),
            str(s["tokens"]),
            f"{s['median_seconds']:.1f}",
            f"{s['median_samples_per_s']:.1f}",
            f"{s['median_tokens_per_s']:.0f}",
            ", ".join(f"{x:.1f}" for x in s["samples_per_s"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"batched / batch-size-1 (median samples/s): **{ratio:.2f}x**")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    load_before = os.getloadavg()[0]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="default", help="toy size, used when --model is not given")
    p.add_argument("--model", default="", help="a checkpoint folder (overrides --size)")
    p.add_argument("--cache", default=".cache/toy", help="where a missing toy size is pretrained")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="", help="also write the results here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)

    path = resolve_model(args.model, args.size, args.cache)
    meta_file = path / MODEL_MANIFEST
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    one = TransformersEngine.from_path(path, batch_size=1)
    batched = TransformersEngine(one.model, one.tokenizer, batch_size=args.batch_size, path=str(path))
    engines = {"batch size 1": one, "batched": batched}
    batch_sizes = {"batch size 1": 1, "batched": args.batch_size}

    task = ArithmeticTask()
    prompts = [task.generation_prompt(q) for q in task.load(args.prompts, seed=0)]
    sampling = Sampling(temperature=args.temperature, max_new_tokens=args.max_new_tokens)
    for engine in engines.values():  # warm-up: allocator, kernels, tokenizer caches
        engine.generate(prompts[:2], 2, Sampling(temperature=args.temperature, max_new_tokens=8), args.seed)

    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in engines}
    for r in range(args.repeats):
        order = list(engines) if r % 2 == 0 else list(reversed(engines))
        for mode in order:
            run = timed(engines[mode], prompts, args.n, sampling, args.seed)
            runs[mode].append(run)
            log.info("repeat %d %s: %.1f s, %.1f samples/s", r, mode, run["seconds"], run["samples"] / run["seconds"])

    identical = all(x["gens"] == runs["batch size 1"][0]["gens"] for rs in runs.values() for x in rs)
    summary = {mode: summarise(rs) for mode, rs in runs.items()}
    ratio = summary["batched"]["median_samples_per_s"] / summary["batch size 1"]["median_samples_per_s"]
    print(table(summary, batch_sizes, ratio))
    print()
    print(
        f"model: {path} (size {meta.get('size', '?')}, {meta.get('n_params', 0) / 1e6:.2f}M params); "
        f"{len(prompts)} prompts x n={args.n}, temperature {args.temperature}, max_new_tokens {args.max_new_tokens}; "
        f"{args.repeats} interleaved repeats; identical samples in both modes: {'yes' if identical else 'NO'}\n"
        f"{describe(load_before)}"
    )
    if args.json:
        out = {
            "args": vars(args),
            "model": str(path),
            "meta": meta,
            "identical_samples": identical,
            "ratio": ratio,
            "summary": summary,
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
