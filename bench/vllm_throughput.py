"""Samples/s of vLLM through our engine, vLLM called directly, and the transformers engine, side by side.

    VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python bench/vllm_throughput.py --size default --repeats 3
    VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python bench/vllm_throughput.py --pretrained smollm2-135m \
        --task word_arithmetic --task-options '{"style": "chat", "shots": 2}' --prompts 8 --n 4 ...

All three sample the same prompts (a task's generation prompts, as token ids with BOS unless the chat
template writes its own) with the same sampling (n per prompt, temperature, top_p, max_new_tokens, stop at EOS):

- "vllm (our engine)": `VllmEngine.generate`: one request per (prompt, sample) with `n=1` and the
  sample's own seed (`sample_seed`), all in one `LLM.generate` call, then our Generation rows;
- "vllm direct, seeded": the same `LLM` called once with one `SamplingParams(n=N, seed=S)` per prompt
  (vLLM's parallel sampling: the prompt is prefilled once and fanned out), outputs not post-processed;
- "vllm direct, unseeded": the same without a seed (vLLM's fastest sampling path, not reproducible);
- "transformers": `TransformersEngine.generate` with --batch-size.

The vLLM modes share one LLM instance; repeats are interleaved (A B C D, D C B A, ...) so drift in machine
load hits all modes alike. The table reports medians and our engine's ratio to the direct calls.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from machine import describe

log = logging.getLogger(__name__)


def resolve_model(model: str, size: str, cache: str, pretrained: str = "") -> Path:
    """An explicit checkpoint folder, a built pretrained model, else the packaged/cached toy checkpoint of `size`."""
    from selfimprove.toy.pretrain import ensure_pretrained

    if pretrained:
        from selfimprove.resources.pretrained import build
        from selfimprove.state import pretrained_root

        return build(pretrained, pretrained_root())
    return Path(model) if model else Path(ensure_pretrained(size, cache))


def summarise(runs: list[tuple[float, int, int]]) -> dict[str, Any]:
    sps = [samples / s for s, samples, _ in runs]
    return {
        "samples": runs[0][1],
        "tokens": runs[0][2],
        "median_seconds": statistics.median(s for s, _, _ in runs),
        "median_samples_per_s": statistics.median(sps),
        "median_tokens_per_s": statistics.median(tokens / s for s, _, tokens in runs),
        "samples_per_s": sps,
    }


def table(summary: dict[str, dict[str, Any]]) -> str:
    head = ["mode", "samples", "tokens", "median s", "samples/s (median)", "tokens/s", "samples/s per repeat"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for mode, s in summary.items():
        cells = [
            mode,
            str(s["samples"]),
            str(s["tokens"]),
            f"{s['median_seconds']:.2f}",
            f"{s['median_samples_per_s']:.1f}",
            f"{s['median_tokens_per_s']:.0f}",
            ", ".join(f"{x:.1f}" for x in s["samples_per_s"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    load_before = os.getloadavg()[0]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="default", help="toy size, used when --model is not given")
    p.add_argument("--model", default="", help="a checkpoint folder (overrides --size)")
    p.add_argument("--cache", default=".cache/toy", help="where a missing toy size is pretrained")
    p.add_argument("--pretrained", default="", help="a pretrained model by name (selfimprove models build NAME)")
    p.add_argument("--task", default="arithmetic", help="the task whose generation prompts are sampled")
    p.add_argument("--task-options", default="{}", help="the task's keywords as JSON")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=512, help="transformers engine batch size")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads of this process (transformers engine)")
    p.add_argument("--enforce-eager", action="store_true", help="vLLM without torch.compile (faster start)")
    p.add_argument("--max-model-len", type=int, default=512)
    p.add_argument("--no-transformers", action="store_true", help="skip the transformers engine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="", help="also write the results here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    import torch
    import vllm
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from selfimprove.resources.engine import Sampling
    from selfimprove.resources.transformers_engine import TransformersEngine
    from selfimprove.resources.vllm_engine import VllmEngine
    from selfimprove.spec import ModelSpec
    from selfimprove.state import MODEL_MANIFEST
    from selfimprove.tasks.registry import get_task

    torch.set_num_threads(args.threads)
    path = resolve_model(args.model, args.size, args.cache, args.pretrained)
    meta_file = path / MODEL_MANIFEST
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    options = json.loads(args.task_options)
    if options.get("style") == "chat":
        options.setdefault("tokenizer", str(path))
    task = get_task(args.task, **options)
    prompts = [task.generation_prompt(q) for q in task.load(args.prompts, seed=0)]
    stop = tuple(getattr(task, "stop", ()) or ())
    sampling = Sampling(args.temperature, args.top_p, args.max_new_tokens, stop)

    start = time.perf_counter()
    spec = ModelSpec(path=str(path), engine="vllm", enforce_eager=args.enforce_eager, max_model_len=args.max_model_len)
    ours = VllmEngine.from_path(path, spec)
    start_seconds = time.perf_counter() - start
    token_prompts = [TokensPrompt(prompt_token_ids=ours.encode(p)) for p in prompts]

    def direct(seeded: bool) -> Callable[[], tuple[int, int]]:
        params = [
            SamplingParams(
                n=args.n,
                seed=args.seed + k if seeded else None,
                temperature=args.temperature,
                top_p=args.top_p,
                max_tokens=args.max_new_tokens,
                stop_token_ids=[ours.eos_id],
                stop=list(stop) or None,
                skip_special_tokens=False,
                spaces_between_special_tokens=False,
            )
            for k in range(len(prompts))
        ]

        def run() -> tuple[int, int]:
            outs = ours.llm.generate(token_prompts, params, use_tqdm=False)
            return sum(len(o.outputs) for o in outs), sum(len(c.token_ids) for o in outs for c in o.outputs)

        return run

    def engine_run(engine: Any) -> Callable[[], tuple[int, int]]:
        def run() -> tuple[int, int]:
            gens = engine.generate(prompts, args.n, sampling, args.seed)
            return len(gens), sum(g.num_tokens for g in gens)

        return run

    modes: dict[str, Callable[[], tuple[int, int]]] = {
        "vllm (our engine)": engine_run(ours),
        "vllm direct, seeded": direct(True),
        "vllm direct, unseeded": direct(False),
    }
    if not args.no_transformers:
        modes[f"transformers (batch {args.batch_size})"] = engine_run(
            TransformersEngine.from_path(path, batch_size=args.batch_size)
        )
    for run in modes.values():  # warm-up
        run()
    identical = [ours.generate(prompts, args.n, sampling, args.seed) for _ in range(2)]

    runs: dict[str, list[tuple[float, int, int]]] = {mode: [] for mode in modes}
    for r in range(args.repeats):
        order = list(modes) if r % 2 == 0 else list(reversed(modes))
        for mode in order:
            t = time.perf_counter()
            samples, tokens = modes[mode]()
            seconds = time.perf_counter() - t
            runs[mode].append((seconds, samples, tokens))
            log.info("repeat %d %s: %.2f s, %.1f samples/s", r, mode, seconds, samples / seconds)
    ours.close()

    summary = {mode: summarise(rs) for mode, rs in runs.items()}
    ours_sps = summary["vllm (our engine)"]["median_samples_per_s"]
    ratios = {m: ours_sps / summary[m]["median_samples_per_s"] for m in summary if m != "vllm (our engine)"}
    print(table(summary))
    print()
    for m, x in ratios.items():
        print(f"our engine / {m} (median samples/s): **{x:.2f}x**")
    print()
    print(
        f"model: {path} (size {meta.get('size', meta.get('name', '?'))}, {meta.get('n_params', 0) / 1e6:.2f}M "
        f"params); {len(prompts)} {args.task} prompts {args.task_options} x n={args.n}, "
        f"temperature {args.temperature}, top_p {args.top_p}, "
        f"max_new_tokens {args.max_new_tokens}; {args.repeats} interleaved repeats; vllm {vllm.__version__}, "
        f"enforce_eager={args.enforce_eager}, vLLM start {start_seconds:.1f} s; "
        f"our engine reproducible across calls: {'yes' if identical[0] == identical[1] else 'NO'}\n"
        f"{describe(load_before)}"
    )
    if args.json:
        out = {"args": vars(args), "model": str(path), "meta": meta, "summary": summary, "ratios": ratios}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
