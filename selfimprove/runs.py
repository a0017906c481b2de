"""Running a job of the code location from the command line: the project's DAGSTER_HOME, progress logs."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path

import dagster as dg

DAGSTER_YAML = """\
# Written by `selfimprove demo`: model-heavy assets share the "model" pool, one at a time.
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""


def ensure_dagster_home() -> Path:
    """An absolute DAGSTER_HOME (default ./.dagster_home) with a dagster.yaml, so run history persists."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_job(job_name: str) -> bool:
    """Run one job of the code location in-process, in the project's DAGSTER_HOME, with progress logs."""
    home = ensure_dagster_home()
    warnings.filterwarnings("ignore", category=dg.BetaWarning)  # DataVersion on Output is beta in Dagster 1.13
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    from selfimprove.definitions import defs, warehouse_root

    job = defs.resolve_job_def(job_name)
    print(f"Running {job.name} (DAGSTER_HOME={home}, warehouse={warehouse_root()})", flush=True)
    start = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance, run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}}
        )
    if not result.success:
        print(f"{job.name} failed; see the run in the Dagster UI (make dev)", file=sys.stderr)
        return False
    print(f"\n{job.name} finished in {time.perf_counter() - start:.0f} s")
    return True
