"""Pretrain (or reuse) toy sizes and measure each as generator and self-verifier; prints a table.

python bench/toy_quality.py --sizes xs,s,m,default --cache .cache/toy --out bench/toy_quality.json
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

from selfimprove.state import MODEL_MANIFEST  # noqa: E402
from selfimprove.toy.evaluate import DEFAULT_METHOD, METHODS, evaluate
from selfimprove.toy.pretrain import ensure_pretrained


def _fmt(x: float | None, pct: bool = True) -> str:
    if x is None or x != x:
        return "n/a"
    return f"{100 * x:.1f}" if pct else f"{x:.3f}"


def table(rows: list[dict[str, Any]], method: str) -> str:
    """Markdown table: one row per size."""
    head = ["size", "params", "tokens", "FLOPs", "pretrain s", "sampling acc %", "greedy acc %"]
    head += [f"AUROC {m}" for m in METHODS] + [f"gap {method} (95% CI), points"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        meta, ev = r["meta"], r["eval"]
        g = ev["methods"][method]
        cells = [
            meta["size"],
            f"{meta['n_params'] / 1e6:.2f}M",
            f"{meta['tokens_seen'] / 1e6:.2f}M",
            f"{meta['flops']:.2e}",
            f"{meta['train_seconds']:.0f}",
            _fmt(ev["sampling_accuracy"]),
            _fmt(ev["greedy_accuracy"]),
            *[_fmt(ev["methods"][m]["within_prompt_auroc"], pct=False) for m in METHODS],
            f"{_fmt(g['gap'])} ({_fmt(g['gap_ci'][0])}, {_fmt(g['gap_ci'][1])})",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="xs,s,m,default")
    p.add_argument("--cache", default=".cache/toy")
    p.add_argument("--out", default="")
    p.add_argument("--prompts", type=int, default=128)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--method", default=DEFAULT_METHOD)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    rows = []
    for size in args.sizes.split(","):
        path = ensure_pretrained(size, args.cache)
        meta = json.loads((Path(path) / MODEL_MANIFEST).read_text())
        ev = evaluate(path, args.prompts, args.samples, args.temperature, extra_temperatures=(0.7, 1.0))
        rows.append({"meta": meta, "eval": ev})
        logging.info("%s: %s", size, json.dumps(ev))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows, args.method))


if __name__ == "__main__":
    main()
