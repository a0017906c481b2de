"""The one Definitions object: every experiments/*.yaml and experiments/studies/*.yaml -> assets, checks,
jobs and resources."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import dagster as dg

from selfimprove.instance import free_dead_runs
from selfimprove.pipelines.factory import build_experiment
from selfimprove.pipelines.study import Study, build_study, load_study
from selfimprove.resources.engines import EngineResource
from selfimprove.resources.io_manager import ParquetIOManager, WarehouseResource
from selfimprove.spec import ExperimentSpec, SpecError, load_spec
from selfimprove.state import warehouse_root

log = logging.getLogger(__name__)
T = TypeVar("T")

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


SPEC_ERRORS: dict[str, str] = {}  # spec file -> why it did not load (its experiment or study is left out)


def _load_each(load: Callable[[Path], T], paths: list[Path]) -> list[T]:
    """Every file that loads; one that does not is reported (log and SPEC_ERRORS) and left out, so one
    bad file never stops the good experiments."""
    loaded = []
    for path in paths:
        try:
            loaded.append(load(path))
        except SpecError as e:
            SPEC_ERRORS[str(path)] = str(e)
            log.error("left out: %s", e)
    return loaded


def experiment_specs(folder: Path = EXPERIMENTS_DIR) -> list[ExperimentSpec]:
    return _load_each(load_spec, sorted(folder.glob("*.yaml")))


def study_specs(folder: Path = EXPERIMENTS_DIR / "studies") -> list[Study]:
    return _load_each(load_study, sorted(folder.glob("*.yaml")))


def spec_error(name: str) -> str | None:
    """Why the experiment or study `name` (its file's stem) did not load, if it did not."""
    return next((e for f, e in SPEC_ERRORS.items() if Path(f).stem == name), None)


defs = build_definitions(experiment_specs(), studies=study_specs())
