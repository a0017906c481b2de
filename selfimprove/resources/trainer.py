"""LoRA training (peft): prepare the adapter, run the spec's update (`resources/updates`), save atomically."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from selfimprove.resources.models import load_model, weight_digest
from selfimprove.resources.updates import UPDATES, PreferencePair, TrainExample
from selfimprove.spec import DistillSpec

log = logging.getLogger(__name__)


def train_lora(
    base_path: str | Path,
    examples: Sequence[TrainExample] | Sequence[PreferencePair],
    spec: DistillSpec,
    out_dir: str | Path,
    seed: int,
    init_adapter: str | Path | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train a LoRA adapter on `base_path` (continuing `init_adapter` if given) and save it to `out_dir`.

    `examples` are what `UPDATES[spec.update].data` names: TrainExample rows (sft) or PreferencePair rows.

    The adapter is written to a temp folder first and renamed into place, so `out_dir` is either
    absent or complete. Returns the manifest, also saved as `manifest.json` in `out_dir`.
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    if not examples:
        raise ValueError(
            f"no training examples for the {spec.update} update: the filter kept nothing (or gave no pairs)"
        )
    update = UPDATES[spec.update]
    torch.manual_seed(seed)
    model, tokenizer = load_model(base_path, device=device, dtype=spec.dtype)
    if init_adapter is not None:
        model = PeftModel.from_pretrained(model, init_adapter, is_trainable=True)
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
    start = time.perf_counter()
    curve = update.fit(model, tokenizer, examples, spec, seed, device)
    model.eval()
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    _set_adapter_base(tmp, Path(base_path).resolve())
    merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    manifest = {
        "path": str(out_dir.resolve()),
        "base_path": str(Path(base_path).resolve()),
        "init_adapter": str(init_adapter) if init_adapter else None,
        "weight_digest": weight_digest(merged),
        "update": spec.update,
        "n_examples": len(examples),
        "train_seconds": round(time.perf_counter() - start, 3),
        "loss_curve": curve,
        "seed": seed,
    }
    if spec.mode == "merge":
        merged.save_pretrained(tmp / "merged")
        tokenizer.save_pretrained(tmp / "merged")
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return manifest


def _set_adapter_base(adapter_dir: Path, base: Path) -> None:
    """Record the base as an absolute local path, so the adapter loads from anywhere."""
    cfg_path = adapter_dir / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = str(base)
    cfg_path.write_text(json.dumps(cfg, indent=2))
