"""Cost per verified sample of MC, CoT-Binary and CoT-Score on an embedded model, side by side.

    .venv/bin/python bench/verification_cost.py --size default --samples 256 --repeats 3

Each method verifies the same model samples with k = 1 and the demo's max tokens; repeats alternate
between methods so machine noise hits all of them alike. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from selfimprove.resources.engine import Sampling
from selfimprove.resources.transformers_engine import TransformersEngine
from selfimprove.spec import VerificationSpec
from selfimprove.tasks.arithmetic import ArithmeticTask
from selfimprove.toy.pretrain import ensure_pretrained
from selfimprove.verification import Candidate, verify

METHODS = ("mc", "cot_binary", "cot_score")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="default")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(2)
    engine = TransformersEngine.from_path(ensure_pretrained(args.size, tempfile.gettempdir() + "/selfimprove-bench"))
    task = ArithmeticTask()
    problems = task.load(args.samples // 8, seed=0, split="eval")
    gens = engine.generate([task.generation_prompt(q) for q in problems], 8, Sampling(0.8, 1.0, args.max_new_tokens), 0)
    cands = [
        Candidate(
            f"s{i}",
            problems[g.prompt_index].prompt_id,
            problems[g.prompt_index].question,
            g.text,
            task.extract_answer(g.text),
            task.grade(problems[g.prompt_index], g.text),
        )
        for i, g in enumerate(gens)
    ]
    spec = VerificationSpec(k=1, temperature=0.0, max_new_tokens=args.max_new_tokens, style="embedded")
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(args.repeats):
        for m in METHODS:
            start = time.perf_counter()
            verify(m, engine, cands, spec, seed=0)
            times[m].append((time.perf_counter() - start) / len(cands))
    mc = statistics.median(times["mc"])
    distinct = len({(c.question, c.answer) for c in cands})  # written checks of the same answer are shared
    print(
        f"model: {args.size}, {len(cands)} samples with {distinct} distinct (question, answer) pairs, k=1, "
        f"max_new_tokens={args.max_new_tokens}, torch threads 2\n"
    )
    print("| method | ms / verified sample (median) | × MC | ms / generated check |\n|---|---:|---:|---:|")
    for m in METHODS:
        t = statistics.median(times[m])
        per_check = "–" if m == "mc" else f"{1000 * t * len(cands) / distinct:.3f}"  # MC scores every sample
        print(f"| {m} | {1000 * t:.3f} | {t / mc:.1f} | {per_check} |")


if __name__ == "__main__":
    main()
