"""The filter stage's launchpad config is typed and described, and filter settings live side by side."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from selfimprove import filters
from selfimprove.assets.common import Experiment, beside_other_settings
from selfimprove.assets.filtered import FilterConfig
from selfimprove.definitions import build_definitions
from selfimprove.resources.warehouse import Warehouse
from selfimprove.spec import FilterSpec
from selfimprove.sql import run_query
from selfimprove.variants import current, merge_variants, variant_key
from tests.conftest import micro_spec

OP = "micro__round_0__filtered"


def test_launchpad_refuses_an_unknown_filter_kind() -> None:
    job = build_definitions([micro_spec(rounds=1)], root="/nonexistent").resolve_job_def("micro_job")
    with pytest.raises(dg.DagsterInvalidConfigError, match="bogus"):
        dg.validate_run_config(job, {"ops": {OP: {"config": {"kind": "bogus"}}}})
    with pytest.raises(dg.DagsterInvalidConfigError, match="tau"):  # a string where a number belongs
        dg.validate_run_config(job, {"ops": {OP: {"config": {"kind": "threshold", "tau": "high"}}}})
    with pytest.raises(ValidationError, match="alpha"):  # ranges: checked when the step starts (pydantic)
        FilterConfig(alpha=2.0)
    dg.validate_run_config(job, {"ops": {OP: {"config": {"kind": "threshold", "tau": 0.7}}}})


def test_every_filter_field_is_described() -> None:
    for name, field in FilterConfig.model_fields.items():
        assert field.description and len(field.description) > 20, name


def test_variant_keys_tell_settings_apart() -> None:
    keys = {
        variant_key(FilterSpec(kind="quantile", alpha=0.5), ["mc"]),
        variant_key(FilterSpec(kind="quantile", alpha=0.25), ["mc"]),
        variant_key(FilterSpec(kind="threshold", tau=0.7), ["mc"]),
        variant_key(FilterSpec(kind="threshold", tau=0.7, empty="best"), ["mc"]),
        variant_key(FilterSpec(kind="quantile", alpha=0.1234567), ["mc"]),
        variant_key(FilterSpec(kind="quantile", alpha=0.12345678), ["mc"]),
    }
    assert keys == {
        "quantile_alpha0.5",
        "quantile_alpha0.25",
        "threshold_tau0.7",
        "threshold_tau0.7_empty-best",
        "quantile_alpha0.1234567",  # two close settings are two variants, not one replacing the other
        "quantile_alpha0.12345678",
    }


def test_a_variant_key_carries_only_the_fields_its_kind_reads() -> None:
    """One setting, one key: `ties` changes nothing for threshold, reweight or majority, and `ensemble` nothing
    for majority (it reads no verifier), so they stay out of those keys; the per-prompt cuts keep their keys."""
    for kind, plain in (("threshold", "threshold_tau0.5"), ("reweight", "reweight_beta0.1"), ("majority", "majority")):
        assert variant_key(FilterSpec(kind=kind, ties="keep"), ["mc"]) == plain
        assert variant_key(FilterSpec(kind=kind, ties="keep", ensemble="mean"), ["mc", "cot_binary"]) == (
            plain if kind == "majority" else f"{plain}_ensemble-mean"
        )
    assert variant_key(FilterSpec(kind="quantile", ties="keep"), ["mc"]) == "quantile_alpha0.5_ties-keep"
    assert variant_key(FilterSpec(kind="topk", k=2, ties="keep"), ["mc"]) == "topk_k2_ties-keep"


def test_uses_ties_says_which_filters_the_tie_rule_changes() -> None:
    """The registry's `uses_ties` (what the keys and the rule text follow) against what each filter keeps on
    binary scores, where every per-prompt cut ties."""
    ids, scores = ["p"] * 4 + ["q"] * 4, np.array([1, 0, 0, 0, 1, 1, 1, 0], dtype=float)
    for name, f in filters.FILTERS.items():
        value = getattr(FilterSpec(k=2), f.param) if f.param else None  # top-1 cannot tie across its cut
        keep, drop = (f.apply(ids, scores, value, t) for t in ("keep", "drop"))
        assert (not np.array_equal(keep, drop)) == f.uses_ties, name


def test_rows_of_other_code_or_other_inputs_are_not_kept_beside(tmp_path: Path) -> None:
    """A setting's rows stay beside a new one only when the same code made them from the same inputs: a table of
    an older CODE_VERSION (maybe with other columns) is replaced, not merged."""
    wh, exp = Warehouse(str(tmp_path)), Experiment(micro_spec(rounds=1))
    gens, rows = pa.table({"sample_id": ["a"]}), pa.table({"sample_id": ["a", "b"], "score": [0.9, 0.4]})
    wh.write(
        "filtered", beside_other_settings(wh, "filtered", exp, 0, rows, "quantile_alpha0.5", "3", [gens]), "micro", 0
    )
    same = beside_other_settings(wh, "filtered", exp, 0, rows.slice(0, 1), "topk_k1", "3", [gens])
    assert same.column("variant").to_pylist() == ["topk_k1", "quantile_alpha0.5", "quantile_alpha0.5"]
    newer = beside_other_settings(wh, "filtered", exp, 0, rows.slice(0, 1), "topk_k1", "4", [gens])
    assert newer.column("variant").to_pylist() == ["topk_k1"]
    other = beside_other_settings(wh, "filtered", exp, 0, rows.slice(0, 1), "topk_k1", "3", [gens.slice(0, 0)])
    assert other.column("variant").to_pylist() == ["topk_k1"]


def test_a_setting_that_keeps_nothing_leaves_the_other_settings_rows() -> None:
    rows = pa.table({"sample_id": ["a", "b"], "score": [0.9, 0.4]})
    quantile = merge_variants(None, rows, "quantile_alpha0.5", "in1")
    merged = merge_variants(quantile, rows.slice(0, 0), "threshold_tau1", "in1")  # a filter that kept no sample
    assert merged.column("variant").to_pylist() == ["quantile_alpha0.5"] * 2
    assert merged.column("current").to_pylist() == [False, False]
    assert current(merged).num_rows == 0  # the next stage reads the empty current setting
    assert merge_variants(merged, rows.slice(0, 0), "threshold_tau1", "in2").num_rows == 0  # other inputs: gone


@pytest.mark.slow
def test_a_second_filter_setting_is_a_row_set_of_its_own(micro_model: Path, tmp_path: Path) -> None:
    spec = micro_spec(rounds=1, gap={"bootstrap": 20})
    defs = build_definitions([spec], root=str(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    assert defs.resolve_job_def("micro_job").execute_in_process(instance=instance).success
    wh = Warehouse(str(tmp_path))
    first = wh.read("filtered", "micro", 0)
    assert set(first.column("variant").to_pylist()) == {"quantile_alpha0.5"}

    # the filter stage and the gap alone, with another setting, as from the launchpad
    stage = dg.AssetSelection.assets(
        dg.AssetKey(["micro", "round_0", "filtered"]), dg.AssetKey(["micro", "round_0", "gap"])
    )
    job = dg.define_asset_job("filter_again", selection=stage)
    defs2 = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    result = defs2.resolve_job_def("filter_again").execute_in_process(
        instance=instance, run_config={"ops": {OP: {"config": {"kind": "topk", "k": 1}}}}
    )
    assert result.success
    rows = run_query(
        str(tmp_path),
        "SELECT variant, bool_and(current) AS current, count(*) AS n FROM filtered GROUP BY variant ORDER BY variant",
    ).to_pylist()
    assert [(r["variant"], r["current"]) for r in rows] == [("quantile_alpha0.5", False), ("topk_k1", True)]
    assert rows[0]["n"] == first.num_rows  # the first setting's rows are untouched
    gap = run_query(str(tmp_path), "SELECT variant, filter FROM gap WHERE configured AND current").to_pylist()
    assert gap == [{"variant": "topk_k1", "filter": "topk"}]  # the gap follows the filter used
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["rule"].value.startswith("mc: topk(k=1")

    # a setting that keeps nothing: the blocking not_empty check reads the current setting's rows (none), not
    # the earlier settings' rows the warehouse keeps beside them, so the round stops before distillation
    nothing = defs2.resolve_job_def("filter_again").execute_in_process(
        instance=instance, run_config={"ops": {OP: {"config": {"kind": "threshold", "tau": 1.0}}}}, raise_on_error=False
    )
    assert not nothing.success
    check = {e.check_name: e for e in nothing.get_asset_check_evaluations()}["not_empty"]
    assert not check.passed and check.metadata["rows"].value == 0
    assert run_query(str(tmp_path), "SELECT count(*) AS n FROM filtered WHERE current").column("n")[0].as_py() == 0
