"""What every stage of an experiment shares: asset keys, groups, the task, output metadata."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import dagster as dg
import pyarrow as pa

from selfimprove.render import md_table
from selfimprove.resources.warehouse import Warehouse, table_digest
from selfimprove.spec import STUDIES_GROUP, ExperimentSpec
from selfimprove.tasks.base import Task
from selfimprove.variants import merge_variants
from selfimprove.verdicts import Verdict, verdict_markdown


@dataclass(frozen=True)
class Experiment:
    """An experiment spec seen from the asset graph. `parent`: the group it is shown inside (a study's for
    its members), else the spec's `group`."""

    spec: ExperimentSpec
    parent: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    def key(self, stage: str, round: int | None = None) -> dg.AssetKey:
        return dg.AssetKey([self.name, stage] if round is None else [self.name, f"round_{round}", stage])

    def model_key(self, round: int) -> dg.AssetKey:
        """The model round `round` starts from: the base model, then each round's checkpoint."""
        return self.key("base_model") if round == 0 else self.key("checkpoint", round - 1)

    def group(self, round: int | None = None) -> str:
        """`demo`, `demo/round_1`: Dagster nests groups at `/`, so the global lineage shows one tile per
        experiment (or study) that opens onto its rounds."""
        parts = [self.parent or self.spec.group, self.name, None if round is None else f"round_{round}"]
        return "/".join(p for p in parts if p)

    @cached_property
    def task(self) -> Task:
        """The task; chat-style prompts without a `tokenizer` option use the experiment model's tokenizer."""
        from selfimprove.tasks.registry import get_task

        options = dict(self.spec.task.options)
        model = self.spec.model
        if options.get("style") == "chat" and "tokenizer" not in options and not self.embedded:
            from selfimprove.resources.model_source import resolve_model

            options["tokenizer"] = str(resolve_model(model))
        return get_task(self.spec.task.name, **options)

    @property
    def embedded(self) -> bool:
        return self.spec.model.embedded is not None


def study_group(study: str) -> str:
    """The group of a study's own assets (inside one `studies` group, so that adding a study adds no tile to
    the global lineage); its members' groups nest inside it."""
    return f"{STUDIES_GROUP}/{study}"


def digest(*parts: object) -> str:
    """A 24-hex-digit sha256 of the parts' strings, each followed by a unit separator (0x1f)."""
    return hashlib.sha256("".join(f"{p}\x1f" for p in parts).encode()).hexdigest()[:24]


def preview(table: pa.Table, columns: list[str] | None = None, rows: int = 5) -> str:
    """A markdown table of the first rows, long cells cut."""
    cols = [c for c in (columns or table.column_names) if c in table.column_names]
    return md_table(table.select(cols).slice(0, rows).to_pylist(), cols, max_chars=60)


def verdict_metadata(found: Sequence[Verdict]) -> dict[str, Any]:
    """The verdicts as a markdown table plus one `verdict_<key>` entry each."""
    meta: dict[str, Any] = {"verdicts": dg.MetadataValue.md(verdict_markdown(found))}
    for v in found:
        meta[f"verdict_{v.key}"] = v.label
    return meta


def output(
    table: pa.Table,
    numbers: dict[str, Any] | None = None,
    columns: list[str] | None = None,
    output_name: str = "result",
) -> dg.Output[pa.Table]:
    """The asset's output (`output_name` of a multi-asset): the table, a content-hash DataVersion, row count,
    preview, key numbers."""
    meta: dict[str, Any] = {"rows": table.num_rows, "preview": dg.MetadataValue.md(preview(table, columns))}
    for k, v in (numbers or {}).items():
        meta[k] = round(v, 6) if isinstance(v, float) else v
    with warnings.catch_warnings():  # data_version on Output is beta in Dagster 1.13: one warning per asset, known
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.Output(table, output_name, metadata=meta, data_version=dg.DataVersion(table_digest(table)))


def beside_other_settings(
    wh: Warehouse,
    stage: str,
    exp: Experiment,
    r: int,
    table: pa.Table,
    variant: str,
    code_version: str,
    inputs: Sequence[pa.Table],
) -> pa.Table:
    """`table` as the current rows of filter setting `variant` of round r's `stage`, beside the stored rows of
    the other settings that the same code made from the same `inputs` (selfimprove/variants.py)."""
    previous = wh.read(stage, exp.name, r) if wh.exists(stage, exp.name, r) else None
    return merge_variants(previous, table, variant, digest(code_version, *map(table_digest, inputs)))
