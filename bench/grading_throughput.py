"""Grading throughput (rows/s) of the real-benchmark tasks on the reference datasets.

    .venv/bin/python bench/grading_throughput.py [--workers 2] [--timeout 5]

Each row grades reference solutions (all correct) and cross pairs (one question's solution against
another question, mostly wrong) through the model-answer path, and prints a Markdown table.
MATH runs math-verify in a process pool; "cold" includes starting the workers, "warm" starts them
first (the workers' parse caches stay empty of the graded strings either way).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selfimprove.tasks.base import Problem  # noqa: E402
from selfimprove.tasks.gsm8k import GSM8KTask  # noqa: E402
from selfimprove.tasks.math import MathTask, shared_pool  # noqa: E402
from selfimprove.tasks.nq import NQOpenTask  # noqa: E402
from selfimprove.tasks.sudoku import Sudoku4Task  # noqa: E402


def cross(problems: Sequence[Problem], completions: Sequence[str], seed: int = 0) -> tuple[list[Problem], list[str]]:
    """Each completion graded against a random other problem."""
    rng = random.Random(seed)
    idx = [rng.randrange(len(problems)) for _ in completions]
    return [problems[i] for i in idx], list(completions)


def timed(fn: Callable[[], list[bool]]) -> tuple[float, int, int]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, len(out), sum(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="math-verify worker processes")
    ap.add_argument("--timeout", type=float, default=5.0, help="math-verify seconds per item")
    args = ap.parse_args()

    rows: list[tuple[str, str, float, int, int]] = []

    def record(task: str, what: str, fn: Callable[[], list[bool]]) -> None:
        secs, n, ok = timed(fn)
        rows.append((task, what, secs, n, ok))
        print(f"{task:10s} {what:34s} {n:6d} rows {secs:7.2f}s {n / secs:10.0f} rows/s ({ok} correct)", flush=True)

    gsm = GSM8KTask()
    gp = gsm.problems("train") + gsm.problems("eval")
    gc = [p.meta["solution"] for p in gp]
    record("gsm8k", "reference solutions", lambda: gsm.grade_many(gp, gc))
    record("gsm8k", "cross pairs", lambda: gsm.grade_many(*cross(gp, gc)))

    math = MathTask(workers=args.workers, timeout_s=args.timeout)
    mp = math.problems("train") + math.problems("eval")
    mc = [p.meta["solution"] for p in mp]
    record("math500", f"reference solutions, cold ({args.workers} proc)", lambda: math.grade_many(mp, mc))
    shared_pool(args.workers, args.timeout).close()
    shared_pool(args.workers, args.timeout).map([("1", "1")] * args.workers)  # start the workers
    record("math500", f"reference solutions, warm ({args.workers} proc)", lambda: math.grade_many(mp, mc))
    shared_pool(args.workers, args.timeout).close()
    shared_pool(args.workers, args.timeout).map([("1", "1")] * args.workers)
    record("math500", f"cross pairs, warm ({args.workers} proc)", lambda: math.grade_many(*cross(mp, mc)))
    inline = MathTask(workers=0)
    record("math500", "reference solutions, in-process", lambda: inline.grade_many(mp, mc))
    if math.timeouts:
        print(f"math500: {math.timeouts} timeouts", flush=True)

    nq = NQOpenTask()
    npr = nq.problems("train") + nq.problems("eval")
    pairs = [(p, f"The answer is {a}.") for p in npr for a in p.meta["answers"]]
    record("nq_open", "accepted answers", lambda: nq.grade_many([p for p, _ in pairs], [c for _, c in pairs]))
    record("nq_open", "cross pairs", lambda: nq.grade_many(*cross([p for p, _ in pairs], [c for _, c in pairs])))

    sudoku = Sudoku4Task()
    start = time.perf_counter()
    sp = sudoku.load(2000, seed=0, split="train")
    gen = time.perf_counter() - start
    print(f"sudoku4    generated 2000 unique puzzles in {gen:.2f}s", flush=True)
    record("sudoku4", "reference solutions", lambda: sudoku.grade_many(sp, [p.reference for p in sp]))
    record("sudoku4", "cross pairs", lambda: sudoku.grade_many(*cross(sp, [p.reference for p in sp])))

    print("\n| task | completions | rows | seconds | rows/s | correct |\n|---|---|---:|---:|---:|---:|")
    for task, what, secs, n, ok in rows:
        print(f"| {task} | {what} | {n} | {secs:.2f} | {n / secs:,.0f} | {ok} |")


if __name__ == "__main__":
    main()
