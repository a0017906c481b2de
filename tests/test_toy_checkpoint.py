"""The committed default checkpoint: files match the digests recorded beside them, and it loads."""

from __future__ import annotations

import hashlib
import json

from transformers import AutoModelForCausalLM, AutoTokenizer

from selfimprove.state import MODEL_MANIFEST
from selfimprove.toy.pretrain import PACKAGED, ensure_pretrained, training_data_digest

DEFAULT = PACKAGED / "default"


def test_digests_match() -> None:
    """The packaged checkpoint is part of the product: a missing one fails here, it is never skipped."""
    assert (DEFAULT / "digests.json").is_file(), f"the packaged default checkpoint is missing: {DEFAULT}"
    recorded = json.loads((DEFAULT / "digests.json").read_text())
    assert "model.safetensors" in recorded["sha256"]
    for name, digest in recorded["sha256"].items():
        assert hashlib.sha256((DEFAULT / name).read_bytes()).hexdigest() == digest, name
    assert (DEFAULT / "model.safetensors").stat().st_size <= 5 * 2**20


def test_loads_and_is_the_default(tmp_path: object) -> None:
    meta = json.loads((DEFAULT / MODEL_MANIFEST).read_text())
    assert meta["size"] == "default" and meta["seed"] == 0
    model = AutoModelForCausalLM.from_pretrained(DEFAULT)
    tok = AutoTokenizer.from_pretrained(DEFAULT)
    assert sum(p.numel() for p in model.parameters()) == meta["n_params"]
    assert tok.eos_token_id == model.config.eos_token_id
    assert ensure_pretrained("default", tmp_path) == DEFAULT  # reused, never retrained


def test_trained_on_what_the_corpus_code_produces_today() -> None:
    """The packaged weights came from this repo's pretraining on today's corpus: a change to the corpus or
    the formats without retraining the checkpoint fails here."""
    meta = json.loads((DEFAULT / MODEL_MANIFEST).read_text())
    assert meta["data_sha256"] == training_data_digest("default", seed=0)


def test_packaged_default_checks_its_own_samples() -> None:
    """The committed checkpoint still solves and self-verifies with the current formats (a format change
    without retraining fails here): issue 2's bars on 64 held-out prompts x 8 samples, seed 0.
    Measured when packaged: accuracy 0.457, within-prompt AUROC 0.80, gap +5.5 [+2.5, +9.0] points."""
    from selfimprove.toy.evaluate import DEFAULT_METHOD, evaluate

    res = evaluate(DEFAULT, n_prompts=64, n_samples=8, temperature=0.8, seed=0, methods=[DEFAULT_METHOD])
    assert 0.30 <= res["sampling_accuracy"] <= 0.80
    check = res["methods"][DEFAULT_METHOD]
    assert check["parse_rate"] > 0.95
    assert check["within_prompt_auroc"] >= 0.65
    assert check["gap_ci"][0] > 0
