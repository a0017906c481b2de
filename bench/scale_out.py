"""A generation stage in-process vs on 1 and 2 Ray workers, side by side in one run, 1 thread per worker.

    python bench/scale_out.py --size default --prompts 256 --n 8 --shard-prompts 32 --repeats 3

Starts a real two-node Ray cluster on this machine (`ray start`, 2 logical CPUs per node, so the idle
workers of the other modes stay placed; stopped at the end),
then times the generation stage's own function (`sample_and_grade`: shards, generate, grade) on the same
prompts three ways: the in-process engine with 1 torch thread, `RayEngine` with 1 worker and with 2
workers (1 CPU and 1 torch thread each, spread over both nodes). Workers are started once per mode,
outside the timed part (their start-up is reported apart). Repeats are interleaved (in-process, 1, 2,
in-process, ...) so drift in machine load hits every mode alike; the table reports medians. All modes
must return identical rows, which the run checks.
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

import pyarrow as pa
import torch
from machine import describe

from selfimprove.assets.sampling import sample_and_grade, task_sampling
from selfimprove.resources.engine import Engine, Sampling
from selfimprove.resources.engines import open_engine
from selfimprove.resources.ray_cluster import LocalRayCluster, wait_for_nodes
from selfimprove.resources.ray_engine import RayEngine
from selfimprove.spec import ExecutionSpec, ModelSpec
from selfimprove.tasks.arithmetic import ArithmeticTask
from selfimprove.tasks.base import Problem
from selfimprove.toy.pretrain import ensure_pretrained

log = logging.getLogger(__name__)


def stage(engine: Engine, args: argparse.Namespace, problems: list[tuple[Problem, str]]) -> tuple[float, pa.Table]:
    task = ArithmeticTask()
    start = time.perf_counter()
    table = sample_and_grade(
        engine=engine,
        task=task,
        problems=problems,
        n=args.n,
        sampling=task_sampling(task, Sampling(0.8, 1.0, args.max_new_tokens)),
        seed=0,
        code_version="bench",
        id_prefix="bench",
        cached=None,
        shard_prompts=args.shard_prompts,
    )
    return time.perf_counter() - start, table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="default")
    p.add_argument("--prompts", type=int, default=256)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--shard-prompts", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="bench/out/scale_out.json")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    path = Path(ensure_pretrained(args.size, Path(".selfimprove/models/embedded")))
    model = ModelSpec(embedded=args.size)
    task = ArithmeticTask()
    problems = [(q, task.generation_prompt(q)) for q in task.load(args.prompts, seed=0)]
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]

    cluster = LocalRayCluster(node_cpus=(2, 2))
    cluster.start()
    engines: dict[str, Any] = {}
    startup: dict[str, float] = {}
    try:
        import ray

        ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
        wait_for_nodes(ray, 2)
        t = time.perf_counter()
        engines["in-process"] = open_engine(path, model)
        startup["in-process"] = time.perf_counter() - t
        for w in (1, 2):
            t = time.perf_counter()
            execution = ExecutionSpec(backend="ray", address=cluster.address, workers=w)
            engines[f"ray, {w} worker{'s' if w > 1 else ''}"] = RayEngine(path, model, execution, open_engine)
            startup[f"ray, {w} worker{'s' if w > 1 else ''}"] = time.perf_counter() - t
        warm = argparse.Namespace(**{**vars(args), "n": 1, "max_new_tokens": 8})
        for engine in engines.values():  # first calls pay one-time costs (allocator, kernels) in every process
            stage(engine, warm, problems[: 2 * args.shard_prompts])  # a unit for each worker
        seconds: dict[str, list[float]] = {m: [] for m in engines}
        tables: dict[str, pa.Table] = {}
        for r in range(args.repeats):
            for mode, engine in engines.items():
                s, tables[mode] = stage(engine, args, problems)
                seconds[mode].append(s)
                log.info("repeat %d %s: %.2f s", r + 1, mode, s)
        same = all(t.equals(tables["in-process"]) for t in tables.values())
        samples = tables["in-process"].num_rows
        tokens = sum(tables["in-process"].column("num_tokens").to_pylist())
    finally:
        for engine in engines.values():
            engine.close()
        ray.shutdown()
        cluster.stop()

    base = statistics.median(seconds["in-process"])
    head = ["mode", "median s", "samples/s", "tokens/s", "vs in-process", "start-up s", "seconds per repeat"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for mode, runs in seconds.items():
        med = statistics.median(runs)
        cells = [mode, f"{med:.1f}", f"{samples / med:.1f}", f"{tokens / med:.0f}", f"{base / med:.2f}x"]
        cells += [f"{startup[mode]:.1f}", ", ".join(f"{s:.1f}" for s in runs)]
        lines.append("| " + " | ".join(cells) + " |")
    result = {
        "args": vars(args),
        "samples": samples,
        "tokens": tokens,
        "identical_rows": same,
        "seconds": seconds,
        "startup_seconds": startup,
        "machine": describe(load_before),
        "table": "\n".join(lines),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print("\n".join(lines))
    print(f"identical rows in every mode: {same}\n{result['machine']}")


if __name__ == "__main__":
    main()
