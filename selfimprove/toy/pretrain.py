"""Pretrain a toy model on the embedded corpus; deterministic for a seed.

    python -m selfimprove.toy.pretrain --size default --out DIR [--seed 0]

Writes model.safetensors + config + tokenizer (save_pretrained) and selfimprove_model.json with
size, n_params, tokens_seen, flops (6*N*D), seed, steps, data_sha256 (of the token batches trained on,
see `training_data_digest`), train_seconds and final_loss.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from selfimprove.state import MODEL_MANIFEST
from selfimprove.toy.corpus import documents
from selfimprove.toy.model import SIZES, build_model, n_params
from selfimprove.toy.tokenizer import build_tokenizer

log = logging.getLogger(__name__)

DIGEST_FILE = "digests.json"
DIGESTED = ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", MODEL_MANIFEST)
PACKAGED = Path(__file__).parent / "checkpoints"


def packed_batches(seed: int, batch_size: int, seq_len: int) -> Iterator[torch.Tensor]:
    """Rows of whole documents (<bos> text <eos>) packed greedily, right-padded with <pad>."""
    tok = build_tokenizer()
    vocab = tok.get_vocab()
    bos, eos, pad = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    docs = documents(seed)
    rows: list[list[int]] = []
    row: list[int] = []
    for text in docs:
        ids = [bos, *(vocab[ch] for ch in text), eos][:seq_len]
        if len(row) + len(ids) > seq_len:
            rows.append(row + [pad] * (seq_len - len(row)))
            row = []
            if len(rows) == batch_size:
                yield torch.tensor(rows, dtype=torch.long)
                rows = []
        row += ids


def training_data_digest(size: str, seed: int = 0) -> str:
    """sha256 of the token batches `pretrain(size, seed=seed)` trains on, recomputed from today's corpus
    code: equal to a checkpoint's `data_sha256` iff that checkpoint saw exactly this data."""
    cfg, h = SIZES[size], hashlib.sha256()
    batches = packed_batches(seed, cfg.batch_size, cfg.seq_len)
    for _ in range(cfg.steps):
        h.update(next(batches).numpy().tobytes())
    return h.hexdigest()


def _lr(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.45 * (1 + math.cos(math.pi * t)))


def pretrain(size: str, out_dir: str | Path, seed: int = 0, threads: int = 1) -> dict[str, Any]:
    """Train `size` from scratch with `seed` and save it to `out_dir`; returns the metadata."""
    cfg = SIZES[size]
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    model = build_model(size)
    model.train()
    tok = build_tokenizer()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.01)
    n, seen, losses, data = n_params(model), 0, [], hashlib.sha256()
    start = time.perf_counter()
    batches = packed_batches(seed, cfg.batch_size, cfg.seq_len)
    for step in range(cfg.steps):
        ids = next(batches)
        data.update(ids.numpy().tobytes())
        labels = ids.masked_fill(ids == tok.pad_token_id, -100)
        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg.steps, cfg.lr, cfg.warmup)
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        seen += int((labels != -100).sum())
        losses.append(loss.item())
        if step % max(1, cfg.steps // 20) == 0 or step == cfg.steps - 1:
            dt = time.perf_counter() - start
            log.info(
                "%s step %d/%d loss %.4f tokens %d (%.0f tok/s)", size, step, cfg.steps, losses[-1], seen, seen / dt
            )
    seconds = time.perf_counter() - start
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(str(out))
    meta = {
        "size": size,
        "n_params": n,
        "tokens_seen": seen,
        "flops": 6 * n * seen,
        "seed": seed,
        "steps": cfg.steps,
        "data_sha256": data.hexdigest(),
        "threads": threads,
        "train_seconds": round(seconds, 1),
        "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 5),
    }
    (out / MODEL_MANIFEST).write_text(json.dumps(meta, indent=2) + "\n")
    record_digests(out)
    log.info("saved %s to %s: %s", size, out, meta)
    return meta


def record_digests(path: str | Path) -> dict[str, str]:
    """Write the sha256 of each checkpoint file to digests.json beside them."""
    files = {n: hashlib.sha256((Path(path) / n).read_bytes()).hexdigest() for n in DIGESTED}
    (Path(path) / DIGEST_FILE).write_text(json.dumps({"sha256": files}, indent=2) + "\n")
    return files


def ensure_pretrained(size: str, cache_dir: str | Path, seed: int = 0) -> Path:
    """A finished checkpoint of (size, seed): the packaged one if it exists, else one in `cache_dir`,
    trained on first use into a temporary folder that is renamed into place when complete."""
    packaged = PACKAGED / size
    if seed == 0 and (packaged / MODEL_MANIFEST).is_file():
        return packaged
    cache = Path(cache_dir)
    target = cache / f"toy-{size}-seed{seed}"
    if (target / MODEL_MANIFEST).is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{size}-", dir=cache))
    try:
        pretrain(size, tmp, seed)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            if not (target / MODEL_MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="default", choices=sorted(SIZES))
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads; 2 oversubscribes a busy 2-core box")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(json.dumps(pretrain(args.size, args.out, args.seed, args.threads)))


if __name__ == "__main__":
    main()
