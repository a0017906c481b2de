"""The one Definitions object: every experiments/*.yaml and experiments/studies/*.yaml -> assets, checks,
jobs and resources."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from selfimprove.instance import free_dead_runs
from selfimprove.pipelines.factory import build_experiment
from selfimprove.pipelines.study import Study, build_study, load_study
from selfimprove.resources.engines import EngineResource
from selfimprove.resources.io_manager import ParquetIOManager, WarehouseResource
from selfimprove.spec import ExperimentSpec, load_spec
from selfimprove.state import warehouse_root

EXPERIMENTS_DIR = Path(os.environ.get("SELFIMPROVE_EXPERIMENTS", Path(__file__).resolve().parents[1] / "experiments"))


def build_definitions(
    specs: list[ExperimentSpec], root: str | None = None, studies: list[Study] | None = None
) -> dg.Definitions:
    root = root or warehouse_root()
    assets, checks, jobs = [], [], []
    for spec in specs:
        built = build_experiment(spec)
        assets += built.assets
        checks += built.checks
        jobs.append(built.job)
    defined = {spec.name: spec for spec in specs}
    for study in studies or []:  # members not defined above are built as round-0 measurements
        built_study = build_study(study, defined)
        assets += built_study.assets
        checks += built_study.checks
        jobs.append(built_study.job)
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        resources={
            "io_manager": ParquetIOManager(root=root),
            "warehouse": WarehouseResource(root=root),
            "engines": EngineResource(),
        },
        sensors=[free_dead_runs],
        executor=dg.in_process_executor,
    )


def experiment_specs(folder: Path = EXPERIMENTS_DIR) -> list[ExperimentSpec]:
    return [load_spec(p) for p in sorted(folder.glob("*.yaml"))]


def study_specs(folder: Path = EXPERIMENTS_DIR / "studies") -> list[Study]:
    return [load_study(p) for p in sorted(folder.glob("*.yaml"))]


defs = build_definitions(experiment_specs(), studies=study_specs())
