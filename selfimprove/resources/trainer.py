"""LoRA training (peft): prepare the adapter, run the spec's update (`resources/updates`), save atomically."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from selfimprove import faults
from selfimprove.resources.models import load_model, weight_digest
from selfimprove.resources.updates import UPDATES, PreferencePair, TrainExample
from selfimprove.spec import DistillSpec
from selfimprove.state import pid_alive, to_state

log = logging.getLogger(__name__)


def train_lora(
    base_path: str | Path,
    examples: Sequence[TrainExample] | Sequence[PreferencePair],
    spec: DistillSpec,
    out_dir: str | Path,
    seed: int,
    init_adapter: str | Path | None = None,
    device: str = "cpu",
    allow_pickle: bool = False,
) -> dict[str, Any]:
    """Train a LoRA adapter on `base_path` (continuing `init_adapter` if given) and save it to `out_dir`.

    `examples` are what `UPDATES[spec.update].data` names: TrainExample rows (sft) or PreferencePair rows.

    The adapter is written to a temp folder first and renamed into place, so `out_dir` is either
    absent or complete; temp folders of killed processes are removed first. Returns the manifest,
    also saved as `manifest.json` in `out_dir`: paths relative to the state folder, and the sha256 of
    every weight file (`verify_saved`).
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    if not examples:
        raise ValueError(
            f"no training examples for the {spec.update} update: the filter kept nothing (or gave no pairs)"
        )
    update = UPDATES[spec.update]
    torch.manual_seed(seed)
    model, tokenizer = load_model(base_path, device=device, dtype=spec.dtype, allow_pickle=allow_pickle)
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
    start = time.perf_counter()
    curve = update.fit(model, tokenizer, examples, spec, seed, device)
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
            "update": spec.update,
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
        faults.point("lora:saved")
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
        if tmp.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
            log.info("removing %s, left by process %s", tmp, pid)
            shutil.rmtree(tmp, ignore_errors=True)


def _set_adapter_base(adapter_dir: Path, final_dir: Path, base: Path) -> None:
    """Record the base: relative to the adapter's final folder when both lie in the state folder (so a
    moved or copied home loads its own base), else as an absolute local path."""
    cfg_path = adapter_dir / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    inside = not Path(to_state(base)).is_absolute() and not Path(to_state(final_dir)).is_absolute()
    cfg["base_model_name_or_path"] = os.path.relpath(base, final_dir) if inside else str(base)
    cfg_path.write_text(json.dumps(cfg, indent=2))
