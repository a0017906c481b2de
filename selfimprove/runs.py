"""Running a job of the code location from the command line: the project's DAGSTER_HOME, progress logs.

A CLI run is made like one the UI launches: it carries the code location's job origin (the location
`dagster dev -w workspace.yaml` loads), so it shows in the job's Runs tab and the Overview timeline and
re-executes from the UI as the same job version. It executes in this process (`execute_run` of a
reconstructable job), so its logs stream to the terminal.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import dagster as dg

from selfimprove.instance import MODULE, WORKSPACE, prepare_instance, process_tags

# a CLI run logs INFO and up to the terminal (progress, counts), not Dagster's DEBUG line per event
RUN_CONFIG: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def location_origin() -> Any:
    """The code location's origin as `dagster dev -w workspace.yaml` loads it."""
    from dagster._core.workspace.load import location_origins_from_yaml_paths

    (origin,) = location_origins_from_yaml_paths([str(WORKSPACE)])
    return origin


def create_run(
    instance: dg.DagsterInstance,
    job_name: str,
    run_config: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> tuple[Any, Any]:
    """A run of `job_name` with the workspace's code-location origin, ready for `execute_run`.

    Returns (reconstructable job, run). The origin and job snapshot are those the UI sees, so the run
    counts as this job's (repository label tag `__repository__@<location>`) and re-executes as the same version.
    """
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.remote_origin import RemoteRepositoryOrigin

    recon_repo = ReconstructableRepository.for_module(MODULE, "defs", working_directory=str(WORKSPACE.parent))
    recon_job = recon_repo.get_reconstructable_job(job_name)
    job_def = recon_job.get_definition()
    repo_name = recon_repo.get_definition().name
    remote_origin = RemoteRepositoryOrigin(location_origin(), repo_name).get_job_origin(job_name)
    run = instance.create_run_for_job(
        job_def=job_def,
        run_config=run_config,
        tags=tags,
        remote_job_origin=remote_origin,
        job_code_origin=recon_job.get_python_origin(),
    )
    return recon_job, run


def progress_logging() -> None:
    """INFO logs on stderr for a CLI run, without the schema stamps sqlite writes for each new run database."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def run_job(job_name: str) -> bool:
    """Run one job of the code location in this process, in the project's DAGSTER_HOME, with progress logs."""
    from dagster._core.execution.api import execute_run

    home = prepare_instance()
    progress_logging()
    from selfimprove.definitions import defs
    from selfimprove.state import warehouse_root

    if job_name not in {j.name for j in defs.jobs or []}:
        from selfimprove.definitions import spec_error

        why = spec_error(job_name.removesuffix("_study_job").removesuffix("_job"))
        print(f"no job {job_name}: {why or 'no such experiment or study'}", file=sys.stderr)
        return False
    print(f"Running {job_name} (DAGSTER_HOME={home}, warehouse={warehouse_root()})", flush=True)
    start = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        recon_job, run = create_run(
            instance,
            job_name,
            run_config=RUN_CONFIG,
            tags=process_tags(),  # so that a later run can tell this one dead if it is killed
        )
        result = execute_run(recon_job, run, instance)
    if not result.success:
        for reason in failed_checks(result):
            print(reason, file=sys.stderr)
        print(f"{job_name} failed; see run {run.run_id} in the Dagster UI (make dev)", file=sys.stderr)
        return False
    print(f"\n{job_name} finished in {time.perf_counter() - start:.0f} s (run {run.run_id})")
    return True


def failed_checks(result: Any) -> list[str]:
    """One line per failed blocking (ERROR) asset check of a run: which check, on what, and why."""
    lines = []
    for ev in result.get_asset_check_evaluations():
        if not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR:
            why = ev.description or "; ".join(f"{k}={v.value}" for k, v in ev.metadata.items())
            lines.append(f"check {ev.check_name} on {ev.asset_key.to_user_string()} failed: {why}")
    return lines
