"""End to end through Dagster: 2 rounds of the micro experiment on a fresh warehouse (real model, real LoRA)."""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg
import pytest

from selfimprove.definitions import build_definitions
from selfimprove.resources.models import load_model, weight_digest
from selfimprove.resources.warehouse import Warehouse
from selfimprove.variants import current
from tests.conftest import micro_spec

BETA_WARNINGS: list[str] = []  # what the run fixture's materializations warned


@pytest.fixture(scope="module")
def run(
    micro_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dg.Definitions, Warehouse, dg.ExecuteInProcessResult]:
    root = str(tmp_path_factory.mktemp("warehouse"))
    defs = build_definitions([micro_spec()], root=root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", dg.BetaWarning)
        result = defs.resolve_job_def("micro_job").execute_in_process(instance=dg.DagsterInstance.ephemeral())
    BETA_WARNINGS.extend(str(w.message) for w in caught if issubclass(w.category, dg.BetaWarning))
    assert result.success
    return defs, Warehouse(root), result


def test_materializations_do_not_warn_beta(run: tuple) -> None:
    """Output(data_version=...) is beta in Dagster 1.13: known, silenced where outputs are built (point 6)."""
    assert BETA_WARNINGS == []


def test_lineage(run: tuple) -> None:
    defs, _, _ = run
    graph = defs.resolve_asset_graph()
    deps = {
        k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in graph.get_all_asset_keys()
    }
    assert deps["micro/round_1/generations"] == {"micro/prompts", "micro/round_0/checkpoint"}
    assert deps["micro/round_0/generations"] == {"micro/prompts", "micro/base_model"}
    assert {"micro/round_0/gap", "micro/round_0/filtered"} <= deps["micro/round_0/checkpoint"]
    assert deps["micro/round_2/eval"] == {"micro/prompts", "micro/round_1/checkpoint"}
    assert len([k for k in deps if k.endswith("/eval")]) == 3  # R + 1 evaluations
    assert graph.get(dg.AssetKey(["micro", "round_1", "filtered"])).group_name == "micro/round_1"


def test_row_counts(run: tuple) -> None:
    _, wh, _ = run
    for r in (0, 1):
        gens = wh.read("generations", "micro", r)
        assert gens.num_rows == 6 * 4
        assert len(set(gens.column("sample_id").to_pylist())) == 24
        ver = wh.read("verifications", "micro", r)
        assert ver.num_rows == 24 and set(ver.column("sample_id").to_pylist()) == set(
            gens.column("sample_id").to_pylist()
        )
        filt = wh.read("filtered", "micro", r)
        assert 0 < filt.num_rows <= 24
        assert set(filt.column("sample_id").to_pylist()) <= set(gens.column("sample_id").to_pylist())
    evals = [wh.read("eval", "micro", r) for r in range(3)]
    assert [e.num_rows for e in evals] == [4 * (1 + 2)] * 3
    report = wh.read("report", "micro")
    assert report.column("round").to_pylist() == [0, 1, 2]


def test_round_1_generated_from_round_0_checkpoint(run: tuple) -> None:
    _, wh, _ = run
    ckpt = wh.read("checkpoint", "micro", 0).to_pylist()[0]
    model, _ = load_model(ckpt["path"])  # hash the weights as loaded, not the manifest's claim
    loaded = weight_digest(model)
    r0, r1 = wh.read("generations", "micro", 0), wh.read("generations", "micro", 1)
    assert set(r1.column("weight_digest").to_pylist()) == {loaded}
    assert set(r0.column("weight_digest").to_pylist()) != {loaded}
    assert r0.column("sample_seed").to_pylist() == r1.column("sample_seed").to_pylist()  # same seeds ...
    assert r0.column("completion").to_pylist() != r1.column("completion").to_pylist()  # ... other samples


def test_rerun_one_stage_with_new_threshold(run: tuple) -> None:
    defs, wh, _ = run
    before = {s: wh.path(s, "micro", 1).stat().st_mtime_ns for s in ("generations", "verifications", "gap")}
    key = dg.AssetKey(["micro", "round_1", "filtered"])
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={key})
    result = job.execute_in_process(
        run_config={
            "ops": {"micro__round_1__filtered": {"config": {"kind": "threshold", "tau": 2.0, "empty": "best"}}}
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    assert [e.asset_key for e in result.get_asset_materialization_events()] == [key]
    filt = wh.read("filtered", "micro", 1)
    now = current(filt)
    assert now.num_rows == 6  # tau above every score: only each prompt's best sample survives
    assert set(now.column("rule").to_pylist()) == {"mc: threshold(tau=2.0)"}
    # the spec's setting stays beside it as a row set of its own, no longer current
    rows = filt.select(["variant", "current"]).to_pylist()
    assert {(r["variant"], r["current"]) for r in rows} == {
        ("threshold_tau2_empty-best", True),
        ("quantile_alpha0.5", False),
    }
    assert before == {s: wh.path(s, "micro", 1).stat().st_mtime_ns for s in before}


def test_sql_over_the_run(run: tuple) -> None:
    from selfimprove.sql import run_query

    _, wh, _ = run
    table = run_query(
        str(wh.root), "SELECT round, avg(correct::INT) AS acc FROM generations GROUP BY round ORDER BY round"
    )
    assert table.column("round").to_pylist() == [0, 1]
    joined = run_query(
        str(wh.root),
        "SELECT count(*) AS n FROM filtered f JOIN generations g USING (sample_id) WHERE f.correct = g.correct",
    )
    assert joined.column("n").to_pylist()[0] == sum(wh.read("filtered", "micro", r).num_rows for r in (0, 1))


def test_analyses_match_the_pure_functions(run: tuple) -> None:
    """threshold_sweep, verifier_overlap, calibration and the gap's majority row, recomputed from the stored rows."""
    import numpy as np

    from selfimprove import filters, metrics, voting
    from selfimprove.sql import run_query
    from selfimprove.verification import sample_scores

    _, wh, _ = run
    gens, ver = wh.read("generations", "micro", 1), wh.read("verifications", "micro", 1)
    ids = gens.column("prompt_id").to_pylist()
    correct = np.asarray(gens.column("correct").to_pylist(), dtype=float)
    mc = np.asarray(sample_scores(ver.to_pylist(), gens.column("sample_id").to_pylist(), "mc", "neutral"))
    sweep = {(r["verifier"], r["axis"], r["setting"]): r for r in wh.read("threshold_sweep", "micro", 1).to_pylist()}
    assert {v for v, _, _ in sweep} == {"mc", "oracle", "majority"}
    for tau in (0.0, 0.5, 1.0):
        assert sweep[("mc", "tau", tau)]["gap"] == pytest.approx(
            metrics.gap(ids, correct, filters.threshold_filter(mc, tau))
        )
    assert sweep[("mc", "alpha", 0.5)]["gap"] == pytest.approx(
        metrics.gap(ids, correct, filters.quantile_filter(ids, mc, 0.5, ties="drop"))
    )
    assert sweep[("oracle", "alpha", 1.0)]["gap"] == 0.0
    assert sum(r["best"] for r in sweep.values()) == 6  # one per (verifier, axis)
    classes = voting.answer_classes(ids, gens.column("answer").to_pylist())
    majority = next(r for r in wh.read("gap", "micro", 1).to_pylist() if r["verifier"] == "majority")
    assert majority["j_fw"] == pytest.approx(voting.majority_accuracy(ids, classes, correct))
    (pair,) = wh.read("verifier_overlap", "micro", 1).to_pylist()
    assert (pair["verifier_a"], pair["verifier_b"]) == ("mc", "majority")
    share = voting.vote_share(ids, classes)
    assert pair["pearson"] == pytest.approx(metrics.score_correlation(mc, share), nan_ok=True)
    calib = {r["verifier"]: r for r in wh.read("calibration", "micro", 1).to_pylist()}
    assert calib["mc"]["ece"] == pytest.approx(metrics.ece(mc, correct))
    assert sum(b["n"] for b in calib["mc"]["reliability"]) == 24
    plot = Path(str(wh.root)) / sweep[("mc", "tau", 0.0)]["plot"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    n = run_query(str(wh.root), "SELECT count(*) AS n FROM threshold_sweep WHERE best AND round = 1")
    assert n.column("n").to_pylist() == [6]
