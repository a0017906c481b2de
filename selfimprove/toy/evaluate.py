"""Quality of a toy checkpoint as a generator and as a verifier of its OWN samples.

Samples N completions per held-out (eval split) prompt, grades them, then scores every sample with
each verification method through the pipeline's own verifiers (`selfimprove.verification`, embedded
formats, greedy, k=1) and filter (`filters.quantile_filter`, alpha 0.5), and reports sampling and
greedy accuracy, within-prompt AUROC (mean over prompts with mixed outcomes), the parse rate and the
GV-gap with a prompt-bootstrap 95% CI.

    python -m selfimprove.toy.evaluate CHECKPOINT [--prompts 128] [--samples 8] [--temperature 0.8]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from selfimprove import filters, metrics
from selfimprove.resources.engine import Sampling
from selfimprove.resources.transformers_engine import TransformersEngine
from selfimprove.spec import VerificationSpec
from selfimprove.tasks.arithmetic import ArithmeticTask
from selfimprove.verification import Candidate, sample_scores, verify

METHODS = ("mc", "cot_binary", "cot_score", "tournament")  # the model-based verifiers, in report order
DEFAULT_METHOD = "cot_binary"
GEN_TOKENS = 96
# The verification settings of experiments/demo.yaml (greedy, one check per sample), every method at once.
VERIFICATION = VerificationSpec(methods=list(METHODS), k=1, temperature=0.0, max_new_tokens=96, style="embedded")


def evaluate(
    checkpoint: str | Path,
    n_prompts: int = 128,
    n_samples: int = 8,
    temperature: float = 0.8,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
    extra_temperatures: Sequence[float] = (),
) -> dict[str, Any]:
    """All quality numbers of one checkpoint on `n_prompts` eval-split problems."""
    start = time.perf_counter()
    engine = TransformersEngine.from_path(checkpoint)
    task = ArithmeticTask()
    problems = task.load(n_prompts, seed, "eval")
    prompts = [task.generation_prompt(p) for p in problems]
    gens = engine.generate(prompts, n_samples, Sampling(temperature, max_new_tokens=GEN_TOKENS), seed)
    pids = [problems[g.prompt_index].prompt_id for g in gens]
    qs = [problems[g.prompt_index].question for g in gens]
    correct = np.array([task.grade(problems[g.prompt_index], g.text) for g in gens], dtype=float)
    answers = [task.extract_answer(g.text) for g in gens]
    greedy = engine.generate(prompts, 1, Sampling(0.0, max_new_tokens=GEN_TOKENS), seed)
    out: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "n_prompts": len(problems),
        "n_samples": n_samples,
        "temperature": temperature,
        "seed": seed,
        "sampling_accuracy": metrics.sampling_accuracy(pids, correct),
        "greedy_accuracy": float(np.mean([task.grade(problems[g.prompt_index], g.text) for g in greedy])),
        "answer_rate": float(np.mean([a is not None for a in answers])),
        "sampling_accuracy_at": {},
        "methods": {},
    }
    for t in extra_temperatures:
        g_t = engine.generate(prompts, n_samples, Sampling(t, max_new_tokens=GEN_TOKENS), seed)
        ids_t = [problems[g.prompt_index].prompt_id for g in g_t]
        ok_t = [task.grade(problems[g.prompt_index], g.text) for g in g_t]
        out["sampling_accuracy_at"][str(t)] = metrics.sampling_accuracy(ids_t, ok_t)
    cands = [
        Candidate(f"{pid}-{g.sample_index}", pid, q, g.text, a, bool(c))
        for g, pid, q, a, c in zip(gens, pids, qs, answers, correct, strict=True)
    ]
    ids = [c.sample_id for c in cands]
    for m in methods:
        t0 = time.perf_counter()
        rows = verify(m, engine, cands, VERIFICATION, seed)  # embedded formats: no task kind
        scores = np.asarray(sample_scores(rows, ids, m, VERIFICATION.on_parse_failure), dtype=float)
        parse_rate = float(np.mean([r["ok"] for r in rows]))
        kept = filters.quantile_filter(pids, scores, 0.5)
        auroc, n_mixed = metrics.within_prompt_auroc(pids, scores, correct)
        res = metrics.gap_with_ci(pids, correct, kept.astype(float), seed=seed)
        out["methods"][m] = {
            "within_prompt_auroc": None if math.isnan(auroc) else auroc,
            "n_mixed_prompts": n_mixed,
            "pooled_auroc": None if math.isnan(pooled := metrics.auroc(scores, correct)) else pooled,
            "filtered_accuracy": res.j_fw,
            "gap": res.gap,
            "gap_ci": list(res.gap_ci),
            "kept_fraction": res.kept_fraction,
            "parse_rate": parse_rate,
            "seconds": round(time.perf_counter() - t0, 1),
        }
    engine.close()
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Quality of a toy checkpoint as generator and self-verifier.")
    p.add_argument("checkpoint")
    p.add_argument("--prompts", type=int, default=128)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--extra-temperatures", default="", help="comma list, sampling accuracy only")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    extra = [float(t) for t in args.extra_temperatures.split(",") if t]
    res = evaluate(
        args.checkpoint, args.prompts, args.samples, args.temperature, args.seed, args.methods.split(","), extra
    )
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
