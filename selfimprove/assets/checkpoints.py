"""The checkpoint asset: LoRA SFT on the filtered samples gives the next round's model."""

import json
import logging
from functools import partial
from pathlib import Path

import dagster as dg
import pyarrow as pa
from dagster import AssetExecutionContext

from selfimprove.assets import plots
from selfimprove.assets.common import Experiment, digest, output, table_digest
from selfimprove.resources.engines import EngineResource
from selfimprove.resources.trainer import train_lora, verify_saved
from selfimprove.resources.updates import UPDATES, PreferencePair, TrainExample
from selfimprove.state import from_state, state_dir, to_state

CODE_VERSION = "1"

log = logging.getLogger(__name__)


def training_data(update: str, table: pa.Table) -> list[TrainExample] | list[PreferencePair]:
    """The update's examples from its round table (`filtered` for sft, `pairs` for dpo / rpo)."""
    rows = table.to_pylist()
    if UPDATES[update].data == "pairs":
        return [PreferencePair(x["prompt"], x["chosen"], x["rejected"]) for x in rows]
    return [TrainExample(x["prompt"], x["completion"], x["weight"]) for x in rows]


def train_plan(exp: Experiment, r: int, base: dict, previous: dict) -> tuple[str, str | None]:
    """(base folder, adapter to continue or None) for round r under the spec's distill mode."""
    mode = exp.spec.distill.mode
    base_path, previous_path = str(from_state(base["path"])), str(from_state(previous["path"]))
    if mode == "continue":
        return base_path, (previous_path if r > 0 else None)
    if mode == "fresh":
        return base_path, None
    return previous_path, None  # merge: a new adapter on the previous round's merged weights


def checkpoint_manifest(exp: Experiment, r: int, data: pa.Table, base: dict, previous: dict) -> dict:
    """Train (or reuse) round r's adapter on `data`, the table the update trains on (filtered or pairs)."""
    spec = exp.spec
    base_path, init = train_plan(exp, r, base, previous)
    key = digest(
        table_digest(data),
        spec.distill.model_dump_json(),
        base["weight_digest"],  # weights, not paths: a moved or copied home still reuses checkpoints
        init is not None,
        previous["weight_digest"],
        spec.seed,
        CODE_VERSION,
    )
    out = state_dir() / "models" / exp.name / f"round_{r}" / key
    manifest = reusable(out)
    if manifest is not None:  # same data, config and starting weights, weight files as saved: reuse
        manifest["reused"] = True
    else:
        examples = training_data(spec.distill.update, data)
        train = partial(
            train_lora,
            base_path,
            examples,
            spec.distill,
            out,
            seed=spec.seed + r,
            init_adapter=init,
            device=spec.model.device,
            allow_pickle=spec.model.allow_pickle,
        )
        if spec.execution.backend == "ray":  # on a worker holding train_resources; `out` must be a shared path
            from selfimprove.resources.ray_engine import run_task

            manifest, where = run_task(train, spec.execution.train_resources, spec.execution)
            manifest["trained_on"] = where
        else:
            manifest = train()
        manifest["reused"] = False
    manifest["path"] = to_state(out / "merged" if spec.distill.mode == "merge" else out)
    return manifest


def reusable(out: Path) -> dict | None:
    """The manifest of a finished checkpoint in `out` whose weight files are those it recorded, else None
    (a changed or retrained-in-place adapter is trained again, never reused under the old digest)."""
    if not (out / "manifest.json").is_file():
        return None
    manifest = json.loads((out / "manifest.json").read_text())
    problem = verify_saved(out, manifest)
    if problem is not None:
        log.warning("checkpoint %s is not reused: %s; training it again", out, problem)
        return None
    return manifest


def loss_png(manifest: dict, r: int) -> bytes:
    """The loss curve's figure, kept beside the checkpoint's weights (drawn once, however often it is reused)."""
    title = f"round {r}: LoRA loss"
    name = f"loss-{digest(manifest['loss_curve'], title)}.png"
    return plots.png_once(from_state(manifest["path"]) / name, lambda: plots.loss_figure(manifest["loss_curve"], title))


def checkpoint_asset(exp: Experiment, r: int) -> dg.AssetsDefinition:
    spec = exp.spec
    data = UPDATES[spec.distill.update].data  # the round table the update trains on
    ins = {
        data: dg.AssetIn(exp.key(data, r)),
        "gap": dg.AssetIn(exp.key("gap", r)),  # so that a blocking check on the gap stops distillation
        "base_model": dg.AssetIn(exp.key("base_model")),
    }
    if r > 0:
        ins["model"] = dg.AssetIn(exp.model_key(r))

    @dg.asset(
        key=exp.key("checkpoint", r),
        ins=ins,
        group_name=exp.group(r),
        kinds={"pytorch", "peft", "safetensors"},
        code_version=CODE_VERSION,
        pool="model",
        description=f"Round {r}: LoRA {spec.distill.update} ({spec.distill.mode}) on the {data} table; "
        f"the round-{r + 1} model.",
    )
    def checkpoint(context: AssetExecutionContext, engines: EngineResource, **tables: pa.Table) -> dg.Output[pa.Table]:
        engines.release()  # free the generation engine's memory for the trainer
        base = tables["base_model"].to_pylist()[0]
        previous = tables["model"].to_pylist()[0] if r > 0 else base
        manifest = checkpoint_manifest(exp, r, tables[data], base, previous)
        context.log.info(f"round {r}: checkpoint {manifest['path']} ({'reused' if manifest['reused'] else 'trained'})")
        where = {f"trained_on_{k}": v for k, v in manifest.get("trained_on", {}).items()}
        row = {
            "path": manifest["path"],
            "base_path": manifest["base_path"],
            "weight_digest": manifest["weight_digest"],
            "mode": spec.distill.mode,
            "update": spec.distill.update,
            "n_examples": manifest["n_examples"],
            "final_loss": manifest["loss_curve"][-1],
            "loss_curve": json.dumps(manifest["loss_curve"]),
            "train_seconds": manifest["train_seconds"],
            "seed": manifest["seed"],
            "reused": manifest["reused"],
        }
        return output(
            pa.Table.from_pylist([row]),
            {
                "path": row["path"],
                "weight_digest": row["weight_digest"],
                "final_loss": row["final_loss"],
                "n_examples": row["n_examples"],
                "loss": dg.MetadataValue.md(plots.md_chart({"loss": manifest["loss_curve"]})),
                "loss_curve": dg.MetadataValue.md(plots.md_image(loss_png(manifest, r), "loss curve")),
                **where,
            },
            ["path", "weight_digest", "n_examples", "final_loss"],
        )

    return checkpoint
