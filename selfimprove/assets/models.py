"""The base model asset: an embedded size trained locally, a pretrained model built from its recipe, or a local
HF checkpoint."""

import json

import dagster as dg
import pyarrow as pa

from selfimprove.assets.common import Experiment, output
from selfimprove.resources.model_source import resolve_model
from selfimprove.resources.models import load_model, weight_digest
from selfimprove.spec import ModelSpec
from selfimprove.state import MODEL_MANIFEST, to_state

CODE_VERSION = "1"


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
