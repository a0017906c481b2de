"""Asset checks on a real micro run whose gap is forced to 0: the failure shows and blocks distillation."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from selfimprove.assets.evals import greedy_change
from selfimprove.definitions import build_definitions
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
    (ver,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "verifications"]
    assert ver.materialization.metadata["cot_binary_parse_failure_rate"].value == 1.0  # the rate the check read


def test_parse_failure_rates_per_method() -> None:
    """One count for the verifications' metadata and the gap's check: a method without rows has no rate."""
    from selfimprove.assets.scoring import parse_failure_rates

    table = pa.table({"method": ["mc", "cot_binary", "mc", "cot_binary", "mc"], "ok": [True, False, True, True, False]})
    assert parse_failure_rates(table) == {"mc": pytest.approx(1 / 3), "cot_binary": 0.5}
    assert parse_failure_rates(table.slice(0, 0)) == {}


def test_greedy_change_is_paired_over_the_shared_prompts() -> None:
    def evals(correct: dict[str, bool]) -> pa.Table:
        rows = [{"prompt_id": p, "mode": m, "correct": c} for p, c in correct.items() for m in ("greedy", "sampled")]
        return pa.Table.from_pylist(rows)

    before = evals({"p0": False, "p1": False, "p2": True, "p3": True, "gone": True})
    change, lo, hi = greedy_change(evals({"p0": True, "p1": True, "p2": True, "p3": True}), before, 200, 0)
    assert change == 0.5 and 0.0 <= lo <= 0.5 <= hi <= 1.0  # p0, p1 gained; "gone" is not in both
    assert greedy_change(before, before, 200, 0) == (0.0, 0.0, 0.0)


def test_stage_checks_run_in_their_stage_step_and_alone_on_the_stored_table(micro_model: Path, tmp_path: Path) -> None:
    """Issue 17: a round is one step per stage (its table checks run in that step, not as steps of their own),
    and a check selected alone (the UI's "Execute") evaluates the stored table without recomputing the stage."""
    spec = micro_spec(rounds=1, gap={"bootstrap": 20, "max_parse_failure_rate": 1.0})
    defs = build_definitions([spec], root=str(tmp_path))
    job = defs.resolve_implicit_global_asset_job_def()
    stages = ["generations", "verifications", "filtered", "gap"]
    keys = {dg.AssetKey(["micro", "round_0", s]) for s in stages}
    upstream = {dg.AssetKey(["micro", s]) for s in ("base_model", "prompts")}
    instance = dg.DagsterInstance.ephemeral()
    assert job.get_subset(asset_selection=upstream).execute_in_process(instance=instance).success
    result = job.get_subset(asset_selection=keys).execute_in_process(instance=instance)
    steps = {e.step_key for e in result.all_events if e.is_step_success}
    assert steps == {f"micro__round_0__{s}" for s in stages}  # no step per check
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    expected = ["samples_complete", "every_sample_verified", "not_empty", "gap_positive", "parse_failure_rate"]
    assert sorted(checks) == sorted(expected)
    assert checks["not_empty"] is True

    # the check alone reads the stored table: emptied behind Dagster's back, it fails and nothing is recomputed
    wh = Warehouse(str(tmp_path))
    stored = wh.read("filtered", "micro", 0)
    wh.write("filtered", stored.slice(0, 0).drop_columns(["experiment", "round"]), "micro", 0)
    check = dg.AssetCheckKey(dg.AssetKey(["micro", "round_0", "filtered"]), "not_empty")
    alone = job.get_subset(asset_selection=set(), asset_check_selection={check}).execute_in_process(
        instance=instance, raise_on_error=False
    )
    assert alone.get_asset_materialization_events() == []
    (evaluation,) = alone.get_asset_check_evaluations()
    assert evaluation.check_name == "not_empty" and not evaluation.passed
    assert evaluation.metadata["rows"].value == 0
    assert wh.read("filtered", "micro", 0).num_rows == 0  # the stage was not run again
