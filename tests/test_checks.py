"""Asset checks on a real micro run whose gap is forced to 0: the failure shows and blocks distillation."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow as pa

from selfimprove.definitions import build_definitions
from selfimprove.pipelines.stage_checks import greedy_change
from selfimprove.resources.warehouse import Warehouse
from tests.conftest import micro_spec


def test_gap_check_fails_and_blocks_distillation(micro_model: Path, tmp_path: Path) -> None:
    # The micro model solves nothing, so every prompt has J_x(f) = 0 and any filter gives gap == 0,
    # while the quantile filter still keeps samples (only the gap check can stop distillation).
    spec = micro_spec(rounds=1, gap={"bootstrap": 20, "block_distill_if_gap_le_zero": True})
    defs = build_definitions([spec], root=str(tmp_path))
    result = defs.resolve_job_def("micro_job").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    checks = {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}
    assert checks["gap_positive"].passed is False
    assert checks["gap_positive"].severity == dg.AssetCheckSeverity.ERROR
    assert checks["gap_positive"].metadata["gap"].value == 0.0
    assert checks["not_empty"].passed is True
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "micro/round_0/gap" in materialized
    assert "micro/round_0/checkpoint" not in materialized  # the blocking check stopped distillation
    assert Warehouse(str(tmp_path)).read("gap", "micro", 0).column("gap").to_pylist()[0] == 0.0


def test_unparseable_verifier_stops_distillation_with_the_reason(micro_model: Path, tmp_path: Path) -> None:
    """Issue 14.5: few-shot natural-language prompts to the embedded model give no parseable verdict; the run
    must stop before distillation (not train on the fallback scores) and say why."""
    from selfimprove.runs import failed_checks

    verification = {"methods": ["cot_binary"], "style": "fewshot", "max_new_tokens": 16}
    spec = micro_spec(rounds=1, verification=verification, gap={"bootstrap": 20})
    defs = build_definitions([spec], root=str(tmp_path))
    result = defs.resolve_job_def("micro_job").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert not result.success
    checks = {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}
    check = checks["parse_failure_rate"]
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["parse_failure_rate"].value == 1.0 and check.metadata["limit"].value == 0.2
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "micro/round_0/gap" in materialized and "micro/round_0/checkpoint" not in materialized
    (line,) = failed_checks(result)
    assert line.startswith("check parse_failure_rate on micro/round_0/gap failed: round 0: 100% of cot_binary")
    assert "distillation stopped" in line


def test_greedy_change_is_paired_over_the_shared_prompts() -> None:
    def evals(correct: dict[str, bool]) -> pa.Table:
        rows = [{"prompt_id": p, "mode": m, "correct": c} for p, c in correct.items() for m in ("greedy", "sampled")]
        return pa.Table.from_pylist(rows)

    before = evals({"p0": False, "p1": False, "p2": True, "p3": True, "gone": True})
    change, lo, hi = greedy_change(evals({"p0": True, "p1": True, "p2": True, "p3": True}), before, 200, 0)
    assert change == 0.5 and 0.0 <= lo <= 0.5 <= hi <= 1.0  # p0, p1 gained; "gone" is not in both
    assert greedy_change(before, before, 200, 0) == (0.0, 0.0, 0.0)
