"""Where a model spec's weights are on disk: an embedded size pretrained once, a pretrained model built once
from its recipe, or a local folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from selfimprove.resources.models import ModelLoadError
from selfimprove.state import pretrained_root, state_dir

if TYPE_CHECKING:
    from selfimprove.spec import ModelSpec


def resolve_model(model: ModelSpec) -> Path:
    """The local folder of a model spec; an embedded size is pretrained once and a pretrained model built
    once, then reused."""
    if model.embedded is not None:
        from selfimprove.toy.pretrain import ensure_pretrained

        return Path(ensure_pretrained(model.embedded, state_dir() / "models" / "embedded", seed=model.seed))
    if model.pretrained is not None:
        from selfimprove.resources.pretrained import build

        return build(model.pretrained, pretrained_root())
    path = Path(str(model.path)).expanduser().resolve()
    if not path.is_dir():
        raise ModelLoadError(f"model.path {path} does not exist or is not a folder")
    return path
