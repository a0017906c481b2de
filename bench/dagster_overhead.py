"""Dagster overhead of a demo round, side by side in one run.

    .venv/bin/python bench/dagster_overhead.py [--size default] [--prompts 96] [--n 8] [--pairs 3] [--compare]

Each pair runs round 0 of the demo experiment (prompts, base model, generations, verifications,
filtered, gap, checkpoint) twice from an empty warehouse and a fresh SELFIMPROVE_HOME:

- **dagster**: `execute_in_process` of that asset selection on the project's persistent instance (a
  DAGSTER_HOME with the project's dagster.yaml, created by an untimed warm-up run, as `selfimprove demo`
  reuses the project's), timed from building the definitions and opening the instance to the end of
  the run. `--compare` adds the same with Dagster's default sqlite event log, and an in-memory instance.
- **direct**: the same asset functions, called directly in dependency order (the stage's function with
  the resources Dagster would pass it: no run, no event log, no steps), each table written to the
  warehouse as the IO manager writes it and read back as it loads it. Asset checks (which run in their
  stage's step on the Dagster path) are not run on this path, so the ratio charges their work to Dagster.

The order alternates within pairs. Every pair checks that both paths gave the same rows (every column
but paths) and the same LoRA weight digest. Prints a Markdown table (wall and CPU time: on a shared
machine the CPU time is the steadier cost), the events each run stored and the time spent storing them,
with the machine, load and date.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import dagster as dg  # noqa: E402
import torch  # noqa: E402
from caching import NAME, Home, demo_spec  # noqa: E402
from machine import describe  # noqa: E402

from selfimprove.definitions import build_definitions  # noqa: E402
from selfimprove.instance import dagster_yaml  # noqa: E402
from selfimprove.pipelines.factory import build_experiment  # noqa: E402
from selfimprove.resources.engines import EngineResource  # noqa: E402
from selfimprove.resources.io_manager import WarehouseResource, partition_of  # noqa: E402
from selfimprove.resources.warehouse import Warehouse  # noqa: E402
from selfimprove.runs import RUN_CONFIG  # noqa: E402
from selfimprove.spec import ExperimentSpec  # noqa: E402
from selfimprove.toy.pretrain import ensure_pretrained  # noqa: E402
from selfimprove.variants import current  # noqa: E402

STAGES = ["generations", "verifications", "filtered", "gap", "checkpoint"]
COMPARED = ["generations", "verifications", "filtered", "checkpoint"]


def targets() -> list[dg.AssetKey]:
    return [dg.AssetKey([NAME, "round_0", s]) for s in STAGES]


class EventLogTimer:
    """Counts the events a run stores and the wall seconds spent storing them (any event log storage)."""

    def __init__(self) -> None:
        self.events, self.seconds = 0, 0.0

    def wrap(self, instance: dg.DagsterInstance) -> dg.DagsterInstance:
        storage = instance.event_log_storage
        store = storage.store_event

        def timed(event: Any) -> None:
            start = time.perf_counter()
            store(event)
            self.events, self.seconds = self.events + 1, self.seconds + time.perf_counter() - start

        storage.store_event = timed  # type: ignore[method-assign]
        return instance


EVENT_LOG: dict[str, EventLogTimer] = {}


# the Dagster paths: the project's instance (its dagster.yaml, as `selfimprove demo`), the same home with
# Dagster's default sqlite event log, and an in-memory instance
DAGSTER_PATHS = {
    "dagster": "project",
    "dagster (Dagster's default event log)": "telemetry:\n  enabled: false\n",
    "dagster (ephemeral)": None,
}


def run_dagster(spec: ExperimentSpec, root: Path, work: Path, path: str) -> tuple[float, float]:
    EngineResource().release()
    timer = EVENT_LOG.setdefault(path, EventLogTimer())
    yaml = DAGSTER_PATHS[path]
    home = work / f"dagster_home_{list(DAGSTER_PATHS).index(path)}"
    if yaml is not None and not home.exists():  # one DAGSTER_HOME per path for every run, as a user's
        home.mkdir()
        (home / "dagster.yaml").write_text(dagster_yaml(home) if yaml == "project" else yaml)
    os.environ["DAGSTER_HOME"] = str(home)
    start, cpu = time.perf_counter(), time.process_time()
    job = build_definitions([spec], root=str(root)).resolve_implicit_global_asset_job_def()
    selection = {*targets(), dg.AssetKey([NAME, "prompts"]), dg.AssetKey([NAME, "base_model"])}
    job = job.get_subset(asset_selection=selection)
    with dg.DagsterInstance.ephemeral() if yaml is None else dg.DagsterInstance.from_config(str(home)) as instance:
        result = job.execute_in_process(instance=timer.wrap(instance), run_config=RUN_CONFIG)  # as `selfimprove demo`
    assert result.success
    EngineResource().release()
    return time.perf_counter() - start, time.process_time() - cpu


def run_direct(spec: ExperimentSpec, root: Path) -> tuple[float, float]:
    """The asset functions in dependency order, with the resources Dagster would pass them."""
    EngineResource().release()
    start, cpu = time.perf_counter(), time.process_time()
    assets = {k: a for a in build_experiment(spec).assets for k in a.keys}
    order: list[dg.AssetKey] = []

    def visit(key: dg.AssetKey) -> None:
        if key not in order:
            for dep in assets[key].keys_by_input_name.values():
                visit(dep)
            order.append(key)

    for key in targets():
        visit(key)
    wh = Warehouse(str(root))
    resources = {"engines": EngineResource(), "warehouse": WarehouseResource(root=str(root))}
    values: dict[dg.AssetKey, Any] = {}
    for key in order:
        a = assets[key]
        fn = inspect.unwrap(a.op.compute_fn.decorated_fn)  # type: ignore[union-attr]  # the stage, not its checks
        wanted = inspect.signature(fn).parameters
        kwargs = {name: values[dep] for name, dep in a.keys_by_input_name.items()}
        kwargs |= {name: r for name, r in resources.items() if name in wanted}
        if "context" in wanted:
            kwargs["context"] = dg.build_asset_context()
        if "config" in wanted:  # the filter's launchpad overrides, none: the spec's filter
            kwargs["config"] = wanted["config"].annotation()
        out = fn(**kwargs)
        table = out.value if isinstance(out, dg.Output) else out
        stage, experiment, round_ = partition_of(key)
        wh.write(stage, table, experiment, round_)
        values[key] = current(wh.read(stage, experiment, round_))  # what the IO manager's load_input hands on
    EngineResource().release()
    return time.perf_counter() - start, time.process_time() - cpu


def rows(root: Path, stage: str) -> list[dict]:
    table = Warehouse(str(root)).read(stage, NAME, 0)
    keep = [c for c in table.column_names if "path" not in c and c != "train_seconds"]
    return [
        {k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
        for r in table.select(keep).to_pylist()
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="default")
    ap.add_argument("--prompts", type=int, default=96)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--compare", action="store_true", help="also time Dagster's default event log and an in-memory instance"
    )
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    spec = demo_spec(args.size, args.prompts, args.n)
    work = Path(tempfile.mkdtemp(prefix="dagster_overhead_"))
    homes = Home(work, ensure_pretrained(args.size, work / "cache"), args.size)
    paths = ["dagster", "direct", *([p for p in DAGSTER_PATHS if p != "dagster"] if args.compare else [])]
    times: dict[str, list[float]] = {p: [] for p in paths}
    cpus: dict[str, list[float]] = {p: [] for p in paths}
    homes.fresh()
    run_direct(spec, work / "wh_warmup")  # untimed: imports (transformers, peft) and first-call costs
    for p in paths:  # untimed: creates each DAGSTER_HOME (a user's exists already)
        if p != "direct":
            homes.fresh()
            run_dagster(spec, work / f"wh_warmup_{paths.index(p)}", work, p)
    EVENT_LOG.clear()
    for i in range(args.pairs):
        roots = {}
        for p in paths if i % 2 == 0 else paths[::-1]:
            homes.fresh()
            roots[p] = work / f"wh_{paths.index(p)}_{i}"
            if p == "direct":
                wall, cpu = run_direct(spec, roots[p])
            else:
                wall, cpu = run_dagster(spec, roots[p], work, p)
            times[p].append(wall)
            cpus[p].append(cpu)
            print(f"pair {i}: {p} {wall:.2f} s wall, {cpu:.2f} s CPU", file=sys.stderr, flush=True)
        for stage in COMPARED:
            first = rows(roots["direct"], stage)
            for p in paths:
                assert rows(roots[p], stage) == first, f"{p} and direct differ in {stage}"
    print(f"\n{describe(load_before[0])}")
    print(f"demo round 0: {args.prompts} prompts x N={args.n}, size {args.size}; {args.pairs} pairs, alternating\n")
    print("| path | wall s per pair | median wall s | / direct, wall | CPU s per pair | median CPU s | / direct, CPU |")
    print("|---|---|---:|---:|---|---:|---:|")
    for p in paths:
        cells = []
        for measured in (times, cpus):
            ratios = [a / b for a, b in zip(measured[p], measured["direct"], strict=True)]
            each = ", ".join(f"{t:.2f}" for t in measured[p])
            cells += [each, f"{statistics.median(measured[p]):.2f}", f"{statistics.median(ratios):.3f}x"]
        print("| " + " | ".join([p, *cells]) + " |")
    print("\nRatios are medians of the per-pair ratios; CPU is the process's CPU time (all its threads).")
    for p, timer in EVENT_LOG.items():
        print(
            f"{p}: {timer.events / args.pairs:.0f} events stored per run, "
            f"{timer.seconds / args.pairs:.2f} s per run in the event log's store_event (wall)"
        )
    print("\nSame rows (generations, verifications, filtered, checkpoint digest) on every path in every pair: yes")


if __name__ == "__main__":
    main()
