"""The committed default checkpoint: files match the digests recorded beside them, and it loads."""

from __future__ import annotations

import hashlib
import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from selfimprove.toy.pretrain import META_FILE, PACKAGED, ensure_pretrained

DEFAULT = PACKAGED / "default"
pytestmark = pytest.mark.skipif(not (DEFAULT / "digests.json").is_file(), reason="no committed checkpoint")


def test_digests_match() -> None:
    recorded = json.loads((DEFAULT / "digests.json").read_text())
    assert "model.safetensors" in recorded["sha256"]
    for name, digest in recorded["sha256"].items():
        assert hashlib.sha256((DEFAULT / name).read_bytes()).hexdigest() == digest, name
    assert (DEFAULT / "model.safetensors").stat().st_size <= 5 * 2**20


def test_loads_and_is_the_default(tmp_path: object) -> None:
    meta = json.loads((DEFAULT / META_FILE).read_text())
    assert meta["size"] == "default" and meta["seed"] == 0
    model = AutoModelForCausalLM.from_pretrained(DEFAULT)
    tok = AutoTokenizer.from_pretrained(DEFAULT)
    assert sum(p.numel() for p in model.parameters()) == meta["n_params"]
    assert tok.eos_token_id == model.config.eos_token_id
    assert ensure_pretrained("default", tmp_path) == DEFAULT  # reused, never retrained
