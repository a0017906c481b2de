"""Issue 14.3 and 14.4: checkpoints are verified against their weight files before reuse, and a state
folder (SELFIMPROVE_HOME) can be moved or copied: manifests and tables record paths relative to it.

Real Dagster runs of the micro experiment (round 0 through round 1's generations) in a home of its own.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from safetensors.torch import load_file, save_file

import selfimprove.resources.engines as engines_mod
from selfimprove.assets import plots
from selfimprove.definitions import build_definitions
from selfimprove.resources.engines import EngineResource, open_engine
from selfimprove.resources.models import adapter_base_path, load_model, weight_digest
from selfimprove.resources.warehouse import Warehouse
from tests.conftest import micro_spec

STAGES = ["generations", "verifications", "gap", "filtered", "checkpoint"]
SUBSET = {
    dg.AssetKey(["micro", "base_model"]),
    dg.AssetKey(["micro", "prompts"]),
    *(dg.AssetKey(["micro", "round_0", s]) for s in STAGES),
    dg.AssetKey(["micro", "round_1", "generations"]),
}


def run(home: Path, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    EngineResource().release()
    monkeypatch.setenv("SELFIMPROVE_HOME", str(home))
    root = home / "warehouse"
    job = (
        build_definitions([micro_spec()], root=str(root))
        .resolve_job_def("micro_job")
        .get_subset(asset_selection=SUBSET)
    )
    assert job.execute_in_process(instance=dg.DagsterInstance.ephemeral()).success
    EngineResource().release()
    return Warehouse(root)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tampered_checkpoint_is_retrained_and_a_copied_home_uses_its_own_folders(
    micro_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    shutil.copytree(micro_model, home / "models" / "embedded" / micro_model.name)
    wh = run(home, monkeypatch)
    ckpt = wh.read("checkpoint", "micro", 0).to_pylist()[0]
    assert (
        not Path(ckpt["path"]).is_absolute()
        and not Path(ckpt["base_path"]).is_absolute()
        or "packaged" in str(ckpt["base_path"])
    )
    adapter = home / ckpt["path"] / "adapter_model.safetensors"
    original = sha(adapter)

    # 14.3: scale lora_B in place (an adapter changed or retrained behind the manifest's back)
    tensors = load_file(adapter)
    tensors = {k: v * 2 if "lora_B" in k else v for k, v in tensors.items()}
    save_file(tensors, adapter, metadata={"format": "pt"})
    assert sha(adapter) != original
    with caplog.at_level(logging.WARNING, logger="selfimprove.assets.checkpoints"):
        wh = run(home, monkeypatch)
    assert "adapter_model.safetensors changed since it was saved" in caplog.text
    again = wh.read("checkpoint", "micro", 0).to_pylist()[0]
    assert again["reused"] is False  # trained again, not reused under the old digest
    assert sha(adapter) == original and again["weight_digest"] == ckpt["weight_digest"]  # same data, same seed
    loaded = weight_digest(load_model(home / again["path"])[0])
    assert set(wh.read("generations", "micro", 1).column("weight_digest").to_pylist()) == {loaded}

    # 14.4: copy the home, move the original away; the copy reruns from its own folders, reusing everything
    copy, gone = tmp_path / "copy", tmp_path / "gone"
    shutil.copytree(home, copy)
    home.rename(gone)
    constructed: list[str] = []
    monkeypatch.setattr(engines_mod, "open_engine", lambda p, m: constructed.append(str(p)) or open_engine(p, m))
    drawn: list[str] = []  # a reused checkpoint's loss figure is the one drawn when it was trained (0.5 s each)
    monkeypatch.setattr(plots, "loss_figure", lambda losses, title: drawn.append(title) or b"")
    wh = run(copy, monkeypatch)
    assert drawn == []
    assert len(list((copy / wh.read("checkpoint", "micro", 0).to_pylist()[0]["path"]).glob("loss-*.png"))) == 1
    assert not home.exists()
    moved = wh.read("checkpoint", "micro", 0).to_pylist()[0]
    assert moved["reused"] is True and moved["weight_digest"] == ckpt["weight_digest"]
    assert constructed == []  # every generation row reused: no model loaded at all
    adapter_dir = copy / moved["path"]
    base = Path(adapter_base_path(adapter_dir))
    assert base.is_relative_to(copy) or not base.is_relative_to(tmp_path)  # its own base (or the packaged one)
    assert weight_digest(load_model(adapter_dir)[0]) == ckpt["weight_digest"]
    for stage in ("base_model", "prompts"):
        assert_no_path_into(wh.read(stage, "micro"), [home, gone])
    for stage in [*STAGES, "generations"]:
        assert_no_path_into(wh.read(stage, "micro", 0), [home, gone])


def assert_no_path_into(table: pa.Table, folders: list[Path]) -> None:
    for row in table.to_pylist():
        for name, value in row.items():
            if isinstance(value, str):
                assert not any(str(f) in value for f in folders), (name, value)


def test_relative_paths_resolve_in_the_current_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from selfimprove.state import from_state, to_state

    monkeypatch.setenv("SELFIMPROVE_HOME", str(tmp_path / "h"))
    assert to_state(tmp_path / "h" / "models" / "x") == "models/x"
    assert to_state(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")
    assert from_state("models/x") == tmp_path / "h" / "models" / "x"
    assert from_state(tmp_path / "elsewhere") == tmp_path / "elsewhere"
