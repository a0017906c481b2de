"""Quality of a toy checkpoint as a generator and as a verifier of its OWN samples.

Samples N completions per held-out (eval split) prompt, grades them, then scores every sample with
each verification format (one greedy verification per distinct candidate answer), and reports
sampling and greedy accuracy, within-prompt AUROC (mean over prompts with mixed outcomes), and the
GV-gap under a per-prompt top-50% quantile filter (ties kept) with a prompt-bootstrap 95% CI.

    python -m selfimprove.toy.evaluate CHECKPOINT [--prompts 128] [--samples 8] [--temperature 0.8]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from selfimprove import metrics
from selfimprove.resources.engine import Sampling, generate_distinct
from selfimprove.resources.transformers_engine import TransformersEngine
from selfimprove.tasks.arithmetic import ArithmeticTask
from selfimprove.toy import formats

METHODS = ("mc", "cot_binary", "cot_score", "tournament")
DEFAULT_METHOD = "cot_binary"
GEN_TOKENS, CHECK_TOKENS, TOURNAMENT_TOKENS = 96, 96, 192


def quantile_keep(prompt_ids: Sequence[str], scores: Sequence[float], keep: float = 0.5) -> np.ndarray:
    """Per prompt, keep samples scoring at least the score ranked ceil(keep*n) (ties kept)."""
    pid, s = np.asarray(prompt_ids), np.asarray(scores, dtype=float)
    kept = np.zeros(s.size, dtype=bool)
    for p in dict.fromkeys(pid.tolist()):
        idx = np.flatnonzero(pid == p)
        ranked = np.sort(s[idx])[::-1]
        kept[idx] = s[idx] >= ranked[max(0, math.ceil(keep * idx.size) - 1)]
    return kept


def _greedy_checks(engine: Any, prompts: list[str], max_tokens: int) -> dict[str, str]:
    """One greedy verification per distinct prompt."""
    gens = generate_distinct(engine, prompts, 1, Sampling(temperature=0.0, max_new_tokens=max_tokens), seed=0)
    return {p: gs[0].text for p, gs in gens.items()}


def _check_scores(
    engine: Any, qs: list[str], answers: list[str | None], prompt: Callable[..., str], parse: Callable[[str], Any]
) -> tuple[list[float], float]:
    """Scores of a generated check (unparseable -> 0) and the parse rate."""
    prompts = [prompt(q, a) for q, a in zip(qs, answers, strict=True)]
    texts = _greedy_checks(engine, prompts, CHECK_TOKENS)
    parsed = [parse(texts[p]) for p in prompts]
    return [0.0 if v is None else float(v) for v in parsed], float(np.mean([v is not None for v in parsed]))


def _mc_scores(engine: Any, qs: list[str], answers: list[str | None]) -> list[float]:
    """p(correct) / (p(correct) + p(incorrect)) of the one-token verdict."""
    prompts = list(dict.fromkeys(formats.mc_prompt(q, a) for q, a in zip(qs, answers, strict=True)))
    yes = engine.score(prompts, [formats.MC_CORRECT] * len(prompts))
    no = engine.score(prompts, [formats.MC_INCORRECT] * len(prompts))
    p = {pr: 1.0 / (1.0 + math.exp(n[0] - y[0])) for pr, y, n in zip(prompts, yes, no, strict=True)}
    return [p[formats.mc_prompt(q, a)] for q, a in zip(qs, answers, strict=True)]


def _tournament_scores(engine: Any, groups: list[tuple[str, list[str | None]]]) -> tuple[list[float], float]:
    """Single-elimination knockout within each prompt's samples (in sample order, byes for odd
    counts); a sample's score is the number of rounds it won. Unparseable comparisons go to A."""
    wins = [[0] * len(c) for _, c in groups]
    alive = [list(range(len(c))) for _, c in groups]
    n_parsed = n_total = 0
    while any(len(a) > 1 for a in alive):
        matches = [(g, a[i], a[i + 1]) for g, a in enumerate(alive) for i in range(0, len(a) - 1, 2)]
        prompts = [formats.tournament_prompt(groups[g][0], groups[g][1][i], groups[g][1][j]) for g, i, j in matches]
        texts = _greedy_checks(engine, prompts, TOURNAMENT_TOKENS)
        winners: list[list[int]] = [[] for _ in alive]
        for (g, i, j), pr in zip(matches, prompts, strict=True):
            w = formats.parse_tournament(texts[pr])
            n_parsed, n_total = n_parsed + (w is not None), n_total + 1
            winner = j if w == 1 else i
            wins[g][winner] += 1
            winners[g].append(winner)
        alive = [w + a[-1:] if len(a) % 2 else w for w, a in zip(winners, alive, strict=True)]
    return [float(w) for ws in wins for w in ws], n_parsed / max(1, n_total)


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
    for m in methods:
        t0, parse_rate = time.perf_counter(), 1.0
        if m == "mc":
            scores = _mc_scores(engine, qs, answers)
        elif m == "cot_binary":
            scores, parse_rate = _check_scores(engine, qs, answers, formats.cot_binary_prompt, formats.parse_cot_binary)
        elif m == "cot_score":
            scores, parse_rate = _check_scores(engine, qs, answers, formats.cot_score_prompt, formats.parse_cot_score)
        elif m == "tournament":
            groups = [(p.question, answers[i * n_samples : (i + 1) * n_samples]) for i, p in enumerate(problems)]
            scores, parse_rate = _tournament_scores(engine, groups)
        else:
            raise ValueError(f"unknown method {m!r}; known: {METHODS}")
        kept = quantile_keep(pids, scores)
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
