"""A run started from the CLI is the code location's run, as if launched from the UI."""

from __future__ import annotations

import subprocess
import sys
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


def test_a_cli_run_prints_no_schema_migration_lines(tmp_path: Path) -> None:
    """A first `selfimprove demo` printed eleven alembic INFO lines (each new sqlite database's stamps)."""
    (tmp_path / "dagster.yaml").write_text("")
    code = (
        "import dagster as dg; from selfimprove.runs import progress_logging; progress_logging(); "
        f"dg.DagsterInstance.from_config({str(tmp_path)!r}).dispose(); import logging; "
        "logging.getLogger('selfimprove').info('progress')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "selfimprove: progress" in out.stderr and "alembic" not in out.stderr
