"""LoRA SFT (peft) on filtered samples: loss on completion tokens only, optional sample weights."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from selfimprove.resources.batching import length_batches, shuffled_batches
from selfimprove.resources.models import load_model, weight_digest
from selfimprove.spec import DistillSpec
from selfimprove.state import to_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainExample:
    prompt: str
    completion: str
    weight: float = 1.0


def _encode(tokenizer: Any, ex: TrainExample) -> tuple[list[int], list[int]]:
    """Token ids and labels; prompt positions are masked with -100."""
    prompt = list(tokenizer(ex.prompt, add_special_tokens=False)["input_ids"])
    if tokenizer.bos_token_id is not None:
        prompt = [tokenizer.bos_token_id, *prompt]
    completion = list(tokenizer(ex.completion, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        completion.append(tokenizer.eos_token_id)
    return prompt + completion, [-100] * len(prompt) + completion


def train_lora(
    base_path: str | Path,
    examples: Sequence[TrainExample],
    spec: DistillSpec,
    out_dir: str | Path,
    seed: int,
    init_adapter: str | Path | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train a LoRA adapter on `base_path` (continuing `init_adapter` if given) and save it to `out_dir`.

    The adapter is written to a temp folder first and renamed into place, so `out_dir` is either
    absent or complete; temp folders of killed processes are removed first. Returns the manifest,
    also saved as `manifest.json` in `out_dir`: paths relative to the state folder, and the sha256 of
    every weight file (`verify_saved`).
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    if not examples:
        raise ValueError("no training examples: the filter kept nothing")
    torch.manual_seed(seed)
    model, tokenizer = load_model(base_path, device=device, dtype=spec.dtype)
    if init_adapter is not None:
        model = PeftModel.from_pretrained(model, init_adapter, is_trainable=True)
        for cfg in model.peft_config.values():  # the recorded base may be relative to the adapter folder
            cfg.base_model_name_or_path = str(Path(base_path).resolve())
    else:
        targets = [m for m in spec.target_modules if any(n.endswith(m) for n, _ in model.named_modules())]
        cfg = LoraConfig(
            r=spec.r,
            lora_alpha=spec.lora_alpha,
            lora_dropout=spec.dropout,
            target_modules=targets,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, cfg)
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    encoded = [_encode(tokenizer, ex) for ex in examples]
    weights = torch.tensor([ex.weight for ex in examples], dtype=torch.float32)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec.learning_rate, weight_decay=0.0)
    order_gen = torch.Generator().manual_seed(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    curve: list[float] = []
    start = time.perf_counter()
    lengths = [len(x) for x, _ in encoded]
    for epoch in range(spec.epochs):
        if spec.group_by_length:
            batches = length_batches(lengths, spec.batch_size, order_gen)
        else:
            batches = shuffled_batches(len(encoded), spec.batch_size, order_gen)
        for batch in batches:
            width = max(len(encoded[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                x, y = encoded[i]
                ids[r, : len(x)], labels[r, : len(y)], mask[r, : len(x)] = torch.tensor(x), torch.tensor(y), 1
            ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            target = labels[:, 1:]
            tok_loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="none"
            ).view(target.shape)
            valid = (target != -100).float()
            per_sample = (tok_loss * valid).sum(1) / valid.sum(1).clamp(min=1)
            w = weights[batch].to(device)
            loss = (per_sample * w).sum() / w.sum().clamp(min=1e-12)
            opt.zero_grad()
            loss.backward()
            opt.step()
            curve.append(round(loss.item(), 5))
        log.info("LoRA epoch %d/%d: loss %.4f", epoch + 1, spec.epochs, curve[-1])
    model.eval()
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp(out_dir.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.{os.getpid()}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _set_adapter_base(tmp, out_dir, Path(base_path).resolve())
        merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
        manifest = {
            "path": to_state(out_dir),
            "base_path": to_state(base_path),
            "init_adapter": to_state(init_adapter) if init_adapter else None,
            "weight_digest": weight_digest(merged),
            "n_examples": len(examples),
            "train_seconds": round(time.perf_counter() - start, 3),
            "loss_curve": curve,
            "seed": seed,
        }
        if spec.mode == "merge":
            merged.save_pretrained(tmp / "merged")
            tokenizer.save_pretrained(tmp / "merged")
        manifest["files"] = weight_files(tmp)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except OSError as e:  # e.g. a full disk: say where
        raise OSError(e.errno, f"could not save the LoRA checkpoint to {out_dir}: {e.strerror or e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def weight_files(folder: Path) -> dict[str, str]:
    """sha256 of every weight file under `folder` (relative posix path -> hex)."""
    return {
        f.relative_to(folder).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*.safetensors"))
    }


def verify_saved(folder: Path, manifest: dict[str, Any]) -> str | None:
    """None when the weight files are those the manifest recorded; otherwise what differs."""
    recorded = manifest.get("files")
    if not recorded:
        return "its manifest records no weight-file digests (an older format)"
    found = weight_files(folder)
    for name, sha in recorded.items():
        if name not in found:
            return f"{name} is missing"
        if found[name] != sha:
            return f"{name} changed since it was saved (sha256 {found[name][:12]}, recorded {sha[:12]})"
    return None


def remove_stale_temp(parent: Path) -> None:
    """Remove temp folders (`.<name>.<pid>.<random>`) left in `parent` by processes that are gone."""
    for tmp in parent.glob(".*.*.*"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if tmp.is_dir() and pid.isdigit() and not _alive(int(pid)):
            log.info("removing %s, left by process %s", tmp, pid)
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _set_adapter_base(adapter_dir: Path, final_dir: Path, base: Path) -> None:
    """Record the base: relative to the adapter's final folder when both lie in the state folder (so a
    moved or copied home loads its own base), else as an absolute local path."""
    cfg_path = adapter_dir / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    inside = not Path(to_state(base)).is_absolute() and not Path(to_state(final_dir)).is_absolute()
    cfg["base_model_name_or_path"] = os.path.relpath(base, final_dir) if inside else str(base)
    cfg_path.write_text(json.dumps(cfg, indent=2))
