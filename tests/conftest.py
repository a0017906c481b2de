"""Shared fixtures: a session-wide state folder holding the micro model, and micro experiment specs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from selfimprove.spec import ExperimentSpec, parse_spec


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the one cause behind the task tests' errors when the reference datasets are not found."""
    from selfimprove.tasks.data import datasets_dir

    where = datasets_dir()
    if not where.is_dir():
        terminalreporter.write_sep("=", "reference datasets not found", red=True)
        terminalreporter.write_line(
            f"The GSM8K/MATH500/NQ-open tests read {where}, which does not exist: clone this repo beside "
            "shared/ (CI's layout) or set SELFIMPROVE_DATASETS to a folder with gsm8k/{train,test}.jsonl, "
            "math500/test.jsonl and nq_open/dev.jsonl."
        )


# The fault-injection group (kill -9 at every stage, dead runs): `make test-faults`, its own CI group.
collect_ignore_glob = [] if os.environ.get("SELFIMPROVE_FAULTS") else ["faults/*"]

MICRO_SPEC = {
    "name": "micro",
    "model": {"embedded": "micro"},
    "task": {"name": "arithmetic", "train_prompts": 6, "eval_prompts": 4, "options": {"max_digits": 2}},
    "generation": {"n": 4, "temperature": 1.0, "max_new_tokens": 40, "shard_prompts": 2},
    "verification": {"methods": ["mc"], "max_new_tokens": 40},
    "filter": {"kind": "quantile", "alpha": 0.5},
    "distill": {"epochs": 1, "batch_size": 8, "learning_rate": 0.01},
    "eval": {"samples": 2},
    "gap": {"bootstrap": 50},
    "rounds": 2,
    "seed": 0,
}


@pytest.fixture(scope="session", autouse=True)
def state_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SELFIMPROVE_HOME for the whole session, so the micro model is pretrained once."""
    home = tmp_path_factory.mktemp("selfimprove_home")
    os.environ["SELFIMPROVE_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def micro_model(state_home: Path) -> Path:
    from selfimprove.toy.pretrain import ensure_pretrained

    return ensure_pretrained("micro", state_home / "models" / "embedded")


def micro_spec(**overrides: object) -> ExperimentSpec:
    data = {**MICRO_SPEC, **overrides}
    return parse_spec(data, "<micro spec>")
