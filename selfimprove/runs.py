"""Running a job of the code location from the command line: the project's DAGSTER_HOME, progress logs."""

from __future__ import annotations

import logging
import sys
import time
import warnings

import dagster as dg


def run_job(job_name: str) -> bool:
    """Run one job of the code location in-process, in the project's DAGSTER_HOME, with progress logs."""
    from selfimprove.instance import prepare_instance, process_tags

    home = prepare_instance()
    warnings.filterwarnings("ignore", category=dg.BetaWarning)  # DataVersion on Output is beta in Dagster 1.13
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    from selfimprove.definitions import defs
    from selfimprove.state import warehouse_root

    if job_name not in {j.name for j in defs.jobs or []}:
        from selfimprove.definitions import spec_error

        why = spec_error(job_name.removesuffix("_study_job").removesuffix("_job"))
        print(f"no job {job_name}: {why or 'no such experiment or study'}", file=sys.stderr)
        return False
    job = defs.resolve_job_def(job_name)
    print(f"Running {job.name} (DAGSTER_HOME={home}, warehouse={warehouse_root()})", flush=True)
    start = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            tags=process_tags(),  # so that a later run can tell this one dead if it is killed
        )
    if not result.success:
        for reason in failed_checks(result):
            print(reason, file=sys.stderr)
        print(f"{job.name} failed; see the run in the Dagster UI (make dev)", file=sys.stderr)
        return False
    print(f"\n{job.name} finished in {time.perf_counter() - start:.0f} s")
    return True


def failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    """One line per failed blocking (ERROR) asset check of a run: which check, on what, and why."""
    lines = []
    for ev in result.get_asset_check_evaluations():
        if not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR:
            why = ev.description or "; ".join(f"{k}={v.value}" for k, v in ev.metadata.items())
            lines.append(f"check {ev.check_name} on {ev.asset_key.to_user_string()} failed: {why}")
    return lines
