"""Study specs: one YAML file per study (`experiments/studies/*.yaml`) over several member experiments.

A study measures the round-0 gap of several generators and relates it to their size (paper §4, Fig. 1)
and, optionally, crosses generators with verifiers of other sizes (§4.2, Fig. 3). Its members are

- `sizes`: embedded sizes; each becomes the experiment `<study>_<label>` made from the study's
  `template` (an experiment spec without `name` and `model.embedded`/`model.path`);
- `members`: experiment YAML files (paths relative to the study file), e.g. a user model with its
  pre-training FLOPs given here (`flops`), since only embedded models record them;
- `cross.sizes`: labels of `sizes` entries; every ordered pair (generator, verifier) of different labels
  becomes `<study>_<generator>_by_<verifier>`, which verifies the generator member's round-0 samples
  (the same samples, not new ones) with the other model (`verification.verifier`).

Members are built as measurements (base model, prompts, round-0 generations, verifications and gap,
with the gap's checks), not as full self-improvement loops; a member whose name is already a top-level
experiment (`experiments/*.yaml`) reuses that experiment's assets. The study's job materializes the
study assets and everything upstream of them, nothing else.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, field_validator, model_validator

from selfimprove.assets.analyses import threshold_sweep_asset, verifier_overlap_asset
from selfimprove.assets.common import Experiment, study_group
from selfimprove.assets.gaps import gap_asset
from selfimprove.assets.generations import generations_asset
from selfimprove.assets.models import base_model_asset
from selfimprove.assets.prompts import prompts_asset
from selfimprove.assets.scaling import CellRef, MemberRef, cross_verification_asset, relative_gap_asset
from selfimprove.assets.thresholds import thresholds_asset
from selfimprove.assets.verifications import verifications_asset
from selfimprove.spec import (
    DagsterName,
    ExperimentSpec,
    FilterKind,
    MethodList,
    SpecError,
    Strict,
    load_spec,
    parse_spec,
    read_yaml,
    validate,
)

_LABEL = re.compile(r"[A-Za-z0-9_]+")


class SizeEntry(Strict):
    """An embedded size as a study member; `flops` overrides the FLOPs its checkpoint records."""

    size: str
    seed: int = 0  # pretraining seed
    flops: float | None = Field(None, gt=0)
    label: str | None = None  # default: the size, or `<size>_seed<seed>`

    @property
    def name(self) -> str:
        return self.label or (self.size if self.seed == 0 else f"{self.size}_seed{self.seed}")


class FileMember(Strict):
    """An experiment file as a study member (any model); give `flops` where the model records none."""

    file: str
    flops: float | None = Field(None, gt=0)
    label: str | None = None  # default: the base model's size (embedded) or folder name


class CrossSpec(Strict):
    sizes: list[str]  # labels of `sizes` entries, in plot order (small to large)
    methods: MethodList | None = None  # verification methods of the cross cells; default: the template's


class VerdictSpec(Strict):
    verifier: str = "cot_score"
    filter: FilterKind = "quantile"
    min_sizes: int = Field(4, ge=2)


class StudySpec(Strict):
    name: DagsterName
    description: str = ""
    template: dict[str, Any] = Field(default_factory=dict)
    sizes: list[SizeEntry] = Field(default_factory=list)
    members: list[FileMember] = Field(default_factory=list)
    cross: CrossSpec | None = None
    verdict: VerdictSpec = VerdictSpec()

    @field_validator("sizes", mode="before")
    @classmethod
    def _plain_sizes(cls, v: Any) -> Any:
        return [{"size": s} if isinstance(s, str) else s for s in v] if isinstance(v, list) else v

    @field_validator("template")
    @classmethod
    def _template(cls, v: dict[str, Any]) -> dict[str, Any]:
        if "name" in v:
            raise ValueError("the template has no name: each member is named <study>_<label>")
        model = v.get("model", {})
        if not isinstance(model, dict) or {"embedded", "pretrained", "path"} & set(model):
            raise ValueError("template.model may set engine options only; the sizes give model.embedded")
        return v

    @model_validator(mode="after")
    def _labels(self) -> StudySpec:
        labels = [s.name for s in self.sizes]
        bad = [x for x in labels + [m.label for m in self.members if m.label] if not _LABEL.fullmatch(x)]
        if bad:
            raise ValueError(f"labels must be letters, digits and _ only, got {bad}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"size labels must be unique, got {labels}")
        if not self.sizes and not self.members:
            raise ValueError("list at least one member in sizes or members")
        if self.cross is not None:
            unknown = [c for c in self.cross.sizes if c not in labels]
            if unknown or len(set(self.cross.sizes)) != len(self.cross.sizes) or len(self.cross.sizes) < 2:
                raise ValueError(f"cross.sizes must be >= 2 distinct labels of sizes {labels}, got {self.cross.sizes}")
        return self


@dataclass(frozen=True)
class Member:
    spec: ExperimentSpec
    label: str | None
    flops: float | None


@dataclass(frozen=True)
class Cell:
    spec: ExperimentSpec
    generator: str  # member experiment whose samples are verified
    generator_label: str
    verifier_label: str


@dataclass(frozen=True)
class Study:
    """A validated study with its member and cross-cell experiment specs resolved."""

    spec: StudySpec
    members: list[Member]
    cells: list[Cell] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name


def _member_data(spec: StudySpec, entry: SizeEntry, name: str) -> dict[str, Any]:
    t = copy.deepcopy(spec.template)
    model = {**t.pop("model", {}), "embedded": entry.size, "seed": entry.seed}
    return {"rounds": 1, **t, "name": name, "model": model}


def parse_study(data: object, source: str = "<study>", base_dir: Path | None = None) -> Study:
    """Validate a study and resolve its members; errors name the source and the member."""
    spec = validate(StudySpec, data, source, "study")
    members: list[Member] = []
    by_label: dict[str, tuple[SizeEntry, ExperimentSpec]] = {}
    for i, entry in enumerate(spec.sizes):
        data_i = _member_data(spec, entry, f"{spec.name}_{entry.name}")
        member = parse_spec(data_i, f"{source}: sizes[{i}] ({entry.name})")
        members.append(Member(member, entry.name, entry.flops))
        by_label[entry.name] = (entry, member)
    for i, m in enumerate(spec.members):
        path = Path(m.file) if base_dir is None else (base_dir / m.file)
        try:
            member = load_spec(path)
        except SpecError as exc:
            raise SpecError(f"{source}: members[{i}]: {exc}") from None
        members.append(Member(member, m.label, m.flops))
    names = [m.spec.name for m in members]
    if len(set(names)) != len(names):
        raise SpecError(f"{source}: member experiment names must be unique, got {names}")
    cells = []
    if spec.cross is not None:
        for g in spec.cross.sizes:
            for v in spec.cross.sizes:
                if g == v:
                    continue
                (gen_entry, gen_spec), (ver_entry, _) = by_label[g], by_label[v]
                data_c = _member_data(spec, gen_entry, f"{spec.name}_{g}_by_{v}")
                verification = dict(data_c.get("verification", {}))
                verifier_model = {**spec.template.get("model", {}), "embedded": ver_entry.size, "seed": ver_entry.seed}
                verification["verifier"] = verifier_model
                if spec.cross.methods:
                    verification["methods"] = list(spec.cross.methods)
                data_c["verification"] = verification
                cell = parse_spec(data_c, f"{source}: cross {g} x {v}")
                cells.append(Cell(cell, gen_spec.name, g, v))
    return Study(spec, members, cells)


def load_study(path: str | Path) -> Study:
    path = Path(path)
    return parse_study(read_yaml(path, "study"), str(path), path.parent)


# --------------------------------------------------------------------------- factory


@dataclass(frozen=True)
class CrossExperiment(Experiment):
    """A cross cell seen from the asset graph: its own verifications and gap over the generator's samples."""

    generator: str = ""

    def key(self, stage: str, round: int | None = None) -> dg.AssetKey:
        if stage in ("base_model", "prompts", "generations"):
            return dg.AssetKey([self.generator, stage] if round is None else [self.generator, f"round_{round}", stage])
        return super().key(stage, round)


@dataclass(frozen=True)
class StudyDefs:
    assets: list[dg.AssetsDefinition]
    job: dg.UnresolvedAssetJobDefinition


def measurement(exp: Experiment) -> list[dg.AssetsDefinition]:
    """The assets up to round 0's gap (no distillation, no eval), with their checks and, for a member's own
    samples, round 0's threshold sweep and verifier overlap."""
    if isinstance(exp, CrossExperiment):
        assets = [verifications_asset(exp, 0), gap_asset(exp, 0, follow_filtered=False)]
    else:
        assets = [base_model_asset(exp), prompts_asset(exp), generations_asset(exp, 0)]
        assets += [verifications_asset(exp, 0), gap_asset(exp, 0, follow_filtered=False)]
        assets += [threshold_sweep_asset(exp, 0), verifier_overlap_asset(exp, 0)]
    return assets


def build_study(study: Study, defined: dict[str, ExperimentSpec]) -> StudyDefs:
    """The study's assets, its members' measurement assets (unless already `defined`) and its job.

    `defined` maps experiment names already in the Definitions to their specs; members added here are
    added to it. A member whose name is defined with another spec is an error.
    """
    assets: list[dg.AssetsDefinition] = []
    group = study_group(study.name)
    exps: list[Experiment] = [Experiment(m.spec, parent=group) for m in study.members]
    exps += [CrossExperiment(c.spec, parent=group, generator=c.generator) for c in study.cells]
    for exp in exps:
        known = defined.get(exp.name)
        if known is not None:
            if known != exp.spec:
                raise SpecError(f"study {study.name}: member {exp.name} differs from the experiment of that name")
            continue
        if exp.spec.group:  # shown in the study's group: a group of its own would be silently ignored
            raise SpecError(
                f"study {study.name}: member {exp.name} sets group: {exp.spec.group}, but a study's members are shown "
                f"in the study's group ({group}); remove it, or add {exp.name} to experiments/ to show it on its own"
            )
        defined[exp.name] = exp.spec
        assets += measurement(exp)
    v = study.spec.verdict
    refs = [MemberRef(m.spec.name, m.label, m.flops) for m in study.members]
    own = [relative_gap_asset(study.name, study.spec.description, refs, v.verifier, v.filter, v.min_sizes)]
    own.append(thresholds_asset(study.name, refs))
    if study.cells:
        by_label = {m.label: m for m in study.members if m.label}
        cross = study.spec.cross
        assert cross is not None
        diag = [CellRef(by_label[x].spec.name, x, x, by_label[x].flops) for x in cross.sizes]
        off = [CellRef(c.spec.name, c.generator_label, c.verifier_label, None) for c in study.cells]
        filter_kind = by_label[cross.sizes[0]].spec.filter.kind
        own.append(cross_verification_asset(study.name, cross.sizes, diag, off, filter_kind))
    job = dg.define_asset_job(
        f"{study.name}_study_job",
        selection=dg.AssetSelection.assets(*own).upstream()
        | dg.AssetSelection.assets(  # each member's round-0 verifier overlap (nothing downstream reads it)
            *[
                dg.AssetKey([m.spec.name, "round_0", s])
                for m in study.members
                for s in ("verifier_overlap", "calibration")
            ]
        ),
        description=study.spec.description or f"Study {study.name}: every member's round-0 gap and the study assets.",
        executor_def=dg.in_process_executor,
    )
    return StudyDefs(assets + own, job)
