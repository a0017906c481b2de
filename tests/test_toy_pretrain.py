"""Micro pretraining: seconds, deterministic for a seed, loadable with the Auto classes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from selfimprove.state import MODEL_MANIFEST
from selfimprove.toy.model import SIZES, build_model, n_params
from selfimprove.toy.pretrain import ensure_pretrained, pretrain, training_data_digest


def _digest(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_micro_is_deterministic_and_loads(tmp_path: Path) -> None:
    meta = pretrain("micro", tmp_path / "a", seed=0)
    pretrain("micro", tmp_path / "b", seed=0)
    pretrain("micro", tmp_path / "c", seed=1)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")
    saved = json.loads((tmp_path / "a" / MODEL_MANIFEST).read_text())
    assert saved == meta and meta["size"] == "micro" and meta["seed"] == 0
    assert meta["flops"] == 6 * meta["n_params"] * meta["tokens_seen"] > 0
    assert meta["data_sha256"] == training_data_digest("micro", 0) != training_data_digest("micro", 1)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    tok = AutoTokenizer.from_pretrained(tmp_path / "a")
    assert type(model).__name__ == "LlamaForCausalLM" and n_params(model) == meta["n_params"]
    assert model.config.eos_token_id == tok.eos_token_id and model.config.vocab_size == len(tok)


def test_ensure_pretrained_reuses(tmp_path: Path) -> None:
    first = ensure_pretrained("micro", tmp_path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    again = ensure_pretrained("micro", tmp_path)
    assert again == first and (again / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temp folder left


def test_sizes_span_params_and_flops() -> None:
    real = [s for s in SIZES if s != "micro"]
    assert "default" in real and len(real) >= 4
    params = {s: n_params(build_model(s)) for s in real}
    tokens = {s: SIZES[s].steps * SIZES[s].batch_size * SIZES[s].seq_len for s in real}
    flops = {s: 6 * params[s] * tokens[s] for s in real}
    assert max(params.values()) / min(params.values()) >= 4
    assert max(flops.values()) / min(flops.values()) >= 10
    assert sorted(real, key=params.get) == sorted(real, key=flops.get)


def test_unknown_size() -> None:
    with pytest.raises(KeyError):
        build_model("huge")
