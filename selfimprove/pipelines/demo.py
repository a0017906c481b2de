"""`selfimprove demo`: materialize an experiment's job through Dagster and print the per-round table."""

from __future__ import annotations

import argparse
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
    from selfimprove.definitions import defs
    from selfimprove.state import warehouse_root

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="selfimprove demo", description=__doc__)
    parser.add_argument("--experiment", default="demo", help="experiment name (a file in experiments/)")
    args = parser.parse_args(argv)
    if not run_job(f"{args.experiment}_job"):
        return 1
    from selfimprove.assets.reports import markdown
    from selfimprove.resources.warehouse import Warehouse
    from selfimprove.state import warehouse_root

    report = Warehouse(warehouse_root()).read("report", args.experiment).drop_columns(["experiment"])
    print(f"\n{args.experiment}: per-round results\n")
    print(markdown(report))
    print(
        f'\nQuery any stage with SQL, e.g.\n  {sys.argv[0]} sql "SELECT round, avg(correct::INT) FROM generations '
        f"WHERE experiment='{args.experiment}' GROUP BY round ORDER BY round\""
    )
    return 0
