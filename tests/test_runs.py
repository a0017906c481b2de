"""A run started from the CLI is the code location's run, as if launched from the UI."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster._core.storage.dagster_run import RunsFilter

from selfimprove.runs import create_run

LABEL = "__repository__@selfimprove.definitions"  # how `dagster dev -w workspace.yaml` names the repository


def test_cli_run_has_the_workspace_job_origin(tmp_path: Path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        _, run = create_run(instance, "demo_job")
        assert run.remote_job_origin is not None
        assert run.remote_job_origin.repository_origin.get_label() == LABEL
        assert run.remote_job_origin.job_name == "demo_job"
        assert run.job_code_origin is not None
        # the job's Runs tab and the Overview timeline filter on this tag
        found = instance.get_runs(RunsFilter(job_name="demo_job", tags={".dagster/repository": LABEL}))
        assert [r.run_id for r in found] == [run.run_id]
        from selfimprove.definitions import defs

        assert run.job_snapshot_id == defs.resolve_job_def("demo_job").get_job_snapshot_id()  # same version
