"""The real-model group (`make test-real`): SmolLM2-135M-Instruct, built offline from its PyPI wheel.

It runs where SELFIMPROVE_REAL_HOME names the state folder the model is built (and cached) in, as
`make test-real` and `make test-vllm` set it; elsewhere every test here is skipped. The session's own
SELFIMPROVE_HOME gets a link to the cached folder, so `model: {pretrained: smollm2-135m}` resolves to it
without a second build.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from selfimprove.resources.pretrained import build, model_dir

NAME = "smollm2-135m"


def real_home() -> Path | None:
    home = os.environ.get("SELFIMPROVE_REAL_HOME")
    return Path(home) if home else None


@pytest.fixture(scope="session")
def smollm2(state_home: Path) -> Path:
    """The built SmolLM2 folder (built once into SELFIMPROVE_REAL_HOME, linked into the session's home)."""
    home = real_home()
    if home is None:
        pytest.skip("the real-model group needs SELFIMPROVE_REAL_HOME: run `make test-real`")
    folder = build(NAME, home / "models" / "pretrained")
    link = model_dir(NAME, state_home / "models" / "pretrained")
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(folder, target_is_directory=True)
    return folder
