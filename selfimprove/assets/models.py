"""The base model asset: an embedded size trained locally, a pretrained model built from its recipe, or a local
HF checkpoint."""

import json
from pathlib import Path

import dagster as dg
import pyarrow as pa

from selfimprove.assets.common import Experiment, output
from selfimprove.resources.models import ModelLoadError, load_model, weight_digest
from selfimprove.spec import ModelSpec
from selfimprove.state import MODEL_MANIFEST, pretrained_root, state_dir, to_state

CODE_VERSION = "1"


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


def base_model_manifest(model: ModelSpec) -> pa.Table:
    path = resolve_model(model)
    net, _ = load_model(
        path, dtype=model.dtype, trust_remote_code=model.trust_remote_code, allow_pickle=model.allow_pickle
    )
    info_file = path / MODEL_MANIFEST
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    return pa.Table.from_pylist(
        [
            {
                "path": to_state(path),  # relative inside the state folder: a moved home keeps working
                "base_path": to_state(path),
                "weight_digest": weight_digest(net),
                "n_params": sum(p.numel() for p in net.parameters()),
                "flops": float(info.get("flops", 0.0)) or None,
                "size": model.embedded or model.pretrained or path.name,
                "seed": model.seed,
            }
        ]
    )


def base_model_asset(exp: Experiment) -> dg.AssetsDefinition:
    @dg.asset(
        key=exp.key("base_model"),
        group_name=exp.group(),
        kinds={"pytorch", "safetensors"},
        code_version=CODE_VERSION,
        description="The round-0 model: its folder, weight digest, size and pre-training FLOPs.",
    )
    def base_model() -> dg.Output[pa.Table]:
        table = base_model_manifest(exp.spec.model)
        row = table.to_pylist()[0]
        return output(table, {"path": row["path"], "weight_digest": row["weight_digest"], "n_params": row["n_params"]})

    return base_model
