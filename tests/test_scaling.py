"""Scaling studies: the fit on a hand-made table (exact numbers), the scaling verdict, study specs, and a
micro study end to end (3 members with FLOPs given in YAML, a 2 x 2 cross-verification matrix)."""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg
import matplotlib.image
import pytest
import yaml

from selfimprove import metrics
from selfimprove.assets import plots
from selfimprove.assets.scaling import add_fits, cross_matrices, fit_summary, model_info
from selfimprove.definitions import build_definitions
from selfimprove.pipelines.study import Study, parse_study
from selfimprove.resources.warehouse import Warehouse
from selfimprove.spec import SpecError, parse_spec
from selfimprove.verdicts import scaling_verdict
from tests.conftest import MICRO_SPEC


def point(verifier: str, flops: float | None, rel: float, lo: float | None = None, hi: float | None = None) -> dict:
    return {
        "verifier": verifier,
        "filter": "quantile",
        "size": f"{verifier}-{flops:g}" if flops else "?",
        "log10_flops": math.log10(flops) if flops else math.nan,
        "relative_gap": rel,
        "relative_gap_lo": rel - 0.02 if lo is None else lo,
        "relative_gap_hi": rel + 0.02 if hi is None else hi,
    }


HAND = [point("cot_score", f, y) for f, y in ((1e9, 0.1), (1e10, 0.2), (1e11, 0.25), (1e12, 0.45))]
HAND += [point("mc", f, y) for f, y in ((1e9, 0.3), (1e10, 0.1), (1e11, 0.2), (1e12, 0.0))]
HAND += [point("mc", None, 0.9)]  # no FLOPs: not in the fit


def test_add_fits_exact_on_a_hand_made_table() -> None:
    rows = add_fits(HAND)
    cot = [r for r in rows if r["verifier"] == "cot_score"]
    # x = 9..12 (mean 10.5), y = .1 .2 .25 .45 (mean .25): Sxy = .55, Sxx = 5 -> slope .11, intercept -.905
    # fitted .085 .195 .305 .415: SS_res = .0045, SS_tot = .065 -> R² = 1 - .0045/.065
    for r in cot:
        assert r["n_sizes"] == 4
        assert r["slope"] == pytest.approx(0.11, abs=1e-12)
        assert r["intercept"] == pytest.approx(-0.905, abs=1e-12)
        assert r["r2"] == pytest.approx(1 - 0.0045 / 0.065, abs=1e-12)
        assert r["spearman"] == pytest.approx(1.0)
    assert [r["relative_gap_fit"] for r in cot] == pytest.approx([0.085, 0.195, 0.305, 0.415])
    mc = [r for r in rows if r["verifier"] == "mc"]
    assert {r["n_sizes"] for r in mc} == {4}
    assert mc[0]["spearman"] == pytest.approx(-0.8)  # ranks 4 2 3 1: 1 - 6 * 18 / (4 * 15)
    assert mc[0]["slope"] == pytest.approx(-0.08, abs=1e-12)  # dy = .15 -.05 .05 -.15: Sxy = -.4 over Sxx = 5
    assert math.isnan(mc[-1]["relative_gap_fit"])  # the point without FLOPs
    assert [(f["verifier"], f["n_sizes"]) for f in fit_summary(rows)] == [("cot_score", 4), ("mc", 4)]


def test_fit_needs_two_distinct_flops() -> None:
    (row,) = add_fits([point("mc", 1e9, 0.1)])
    assert row["n_sizes"] == 1 and math.isnan(row["slope"]) and math.isnan(row["spearman"])


def test_model_info_flops_override_and_log() -> None:
    base = {"size": "micro", "n_params": 13600, "flops": 6.0e9}
    assert model_info(base) == {"size": "micro", "n_params": 13600, "flops": 6.0e9, "log10_flops": math.log10(6e9)}
    assert model_info(base, 1e12, "big")["log10_flops"] == 12.0
    assert math.isnan(model_info({"size": "hf", "n_params": 5, "flops": None})["log10_flops"])


def test_scaling_verdict_hand_cases() -> None:
    holds = scaling_verdict(HAND, "cot_score")
    assert holds.holds is True and "rho 1.000 over 4 models" in holds.evidence
    assert scaling_verdict(HAND, "mc").holds is False  # not monotone
    overlap = [point("cot_score", f, y, 0.0, 0.6) for f, y in ((1e9, 0.1), (1e10, 0.2), (1e11, 0.3), (1e12, 0.4))]
    assert "overlap" in scaling_verdict(overlap).evidence and scaling_verdict(overlap).holds is False
    assert scaling_verdict(HAND[:3], "cot_score").holds is None  # 3 < 4 sizes
    assert scaling_verdict(HAND[:3], "cot_score", min_sizes=3).holds is True
    assert scaling_verdict(HAND, "tournament").holds is None


def test_cross_matrices_layout() -> None:
    rows = [
        {
            "generator": g,
            "verifier_model": v,
            "verifier": "mc",
            "filter": "quantile",
            "gap": i,
            "gap_lo": 0,
            "gap_hi": 9,
        }
        for i, (g, v) in enumerate([("a", "a"), ("a", "b"), ("b", "a")])
    ]
    gens, vers, gap, lo, _ = cross_matrices(rows, ["a", "b"], "quantile")["mc"]
    assert gens == vers == ["a", "b"]
    assert gap[0, 0] == 0 and gap[0, 1] == 1 and gap[1, 0] == 2 and math.isnan(gap[1, 1])


# --------------------------------------------------------------------------- specs

TEMPLATE = {k: v for k, v in MICRO_SPEC.items() if k not in ("name", "model", "rounds")}


def study_data(**overrides: object) -> dict:
    return {"name": "t", "template": TEMPLATE, "sizes": ["micro", {"size": "micro", "seed": 1}], **overrides}


def test_study_spec_members_and_cross_cells() -> None:
    study = parse_study(study_data(cross={"sizes": ["micro", "micro_seed1"], "methods": ["mc"]}))
    assert [m.spec.name for m in study.members] == ["t_micro", "t_micro_seed1"]
    assert [m.spec.model.seed for m in study.members] == [0, 1]
    assert all(m.spec.rounds == 1 and m.spec.generation.n == 4 for m in study.members)
    assert [(c.spec.name, c.generator) for c in study.cells] == [
        ("t_micro_by_micro_seed1", "t_micro"),
        ("t_micro_seed1_by_micro", "t_micro_seed1"),
    ]
    verifier = study.cells[0].spec.verification.verifier
    assert verifier is not None and (verifier.embedded, verifier.seed) == ("micro", 1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cross": {"sizes": ["micro", "xl"]}}, "cross.sizes must be >= 2 distinct labels"),
        ({"template": {**TEMPLATE, "name": "x"}}, "the template has no name"),
        ({"template": {**TEMPLATE, "model": {"embedded": "xs"}}}, "engine options only"),
        ({"template": {**TEMPLATE, "generation": {"n": 0}}}, r"sizes\[0\] \(micro\).*generation.n"),
        ({"sizes": [], "members": []}, "at least one member"),
        ({"sizes": ["micro", "micro"]}, "unique"),
    ],
)
def test_study_spec_errors(overrides: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_study(study_data(**overrides), "study.yaml")


def test_repo_studies_load() -> None:
    from selfimprove.definitions import EXPERIMENTS_DIR, study_specs

    (scaling,) = [s for s in study_specs() if s.name == "scaling"]
    labels = [m.label for m in scaling.members]
    assert len(labels) >= 4 and {"xs", "s", "m", "default"} <= set(labels)
    assert scaling.spec.verdict.verifier == "cot_score"
    assert "cot_score" in scaling.members[0].spec.verification.methods
    assert (EXPERIMENTS_DIR / "studies" / "scaling.yaml").is_file()


def test_module_defs_serve_the_study_and_iterate() -> None:
    from selfimprove.definitions import EXPERIMENTS_DIR, defs
    from selfimprove.spec import load_spec

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"scaling/relative_gap", "scaling/cross_verification"} <= keys
    assert {"scaling_xs/round_0/gap", "scaling_m/base_model", "scaling_xs_by_default/round_0/verifications"} <= keys
    assert "scaling_xs_by_default/round_0/generations" not in keys  # a cross cell reuses the generator's samples
    assert "scaling_xs/round_0/checkpoint" not in keys  # members are measurements
    assert {"iterate/report", "iterate/round_2/gap", "iterate/round_3/eval"} <= keys
    assert {"iterate_job", "scaling_study_job"} <= {j.name for j in defs.jobs}
    iterate = load_spec(EXPERIMENTS_DIR / "iterate.yaml")
    assert iterate.rounds >= 3 and iterate.model.embedded == "default"


def test_member_that_is_a_top_level_experiment_is_reused(tmp_path: Path) -> None:
    solo = {**MICRO_SPEC, "name": "solo"}
    (tmp_path / "solo.yaml").write_text(yaml.safe_dump(solo))
    study = parse_study({"name": "t", "members": [{"file": "solo.yaml", "flops": 1e9}]}, "t.yaml", tmp_path)
    assert study.members[0].flops == 1e9 and study.cells == []
    defs = build_definitions([parse_spec(solo)], root=str(tmp_path / "wh"), studies=[study])
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert "solo/report" in keys and "solo/round_1/checkpoint" in keys  # the full loop, built once
    job = defs.resolve_job_def("t_study_job")
    selected = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    expected = {f"solo/{s}" for s in ("base_model", "prompts", "round_0/generations", "round_0/verifications")}
    expected |= {f"solo/round_0/{s}" for s in ("gap", "threshold_sweep", "verifier_overlap", "calibration")}
    expected |= {"solo/round_0/filtered"}  # the gap follows the experiment's filter stage
    expected |= {"t/relative_gap", "t/thresholds"}
    assert selected == expected  # nothing past round 0's gap and its analyses
    with pytest.raises(SpecError, match="member solo differs"):
        build_definitions([parse_spec({**solo, "seed": 5})], root=str(tmp_path / "wh"), studies=[study])
    measured = build_definitions([], root=str(tmp_path / "wh"), studies=[study])  # alone: a measurement only
    # alone, the member's gap uses its spec's filter: no filtered stage
    assert {k.to_user_string() for k in measured.resolve_asset_graph().get_all_asset_keys()} == selected - {
        "solo/round_0/filtered"
    }


def test_member_group_is_refused_not_ignored(tmp_path: Path) -> None:
    """A member built by the study is shown in the study's group, so a `group:` of its own is an error that says
    so (it was silently ignored); the same file as a top-level experiment keeps its group."""
    solo = {**MICRO_SPEC, "name": "solo", "group": "mine"}
    (tmp_path / "solo.yaml").write_text(yaml.safe_dump(solo))
    study = parse_study({"name": "t", "members": [{"file": "solo.yaml", "flops": 1e9}]}, "t.yaml", tmp_path)
    with pytest.raises(SpecError, match=r"member solo sets group: mine, but .* \(studies/t\)"):
        build_definitions([], root=str(tmp_path / "wh"), studies=[study])
    defs = build_definitions([parse_spec(solo)], root=str(tmp_path / "wh"), studies=[study])
    assert defs.resolve_asset_graph().get(dg.AssetKey(["solo", "prompts"])).group_name == "mine/solo"


# --------------------------------------------------------------------------- a micro study end to end


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@pytest.fixture(scope="module")
def micro_study(micro_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Study, Warehouse, dict]:
    tmp = tmp_path_factory.mktemp("study")
    (tmp / "members").mkdir()
    member = {**MICRO_SPEC, "name": "t_extra", "rounds": 1, "seed": 2}
    (tmp / "members" / "extra.yaml").write_text(yaml.safe_dump(member))
    data = study_data(
        sizes=[{"size": "micro", "flops": 1e9}, {"size": "micro", "seed": 1, "flops": 1e10}],
        members=[{"file": "members/extra.yaml", "flops": 1e11, "label": "extra"}],
        cross={"sizes": ["micro", "micro_seed1"]},
        verdict={"verifier": "mc", "filter": "quantile", "min_sizes": 2},
    )
    (tmp / "t.yaml").write_text(yaml.safe_dump(data))
    from selfimprove.pipelines.study import load_study

    study = load_study(tmp / "t.yaml")
    root = str(tmp / "warehouse")
    defs = build_definitions([], root=root, studies=[study])
    result = defs.resolve_job_def("t_study_job").execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    events = {e.asset_key.to_user_string(): e.materialization for e in result.get_asset_materialization_events()}
    return study, Warehouse(root), events


def test_study_job_materializes_measurements_only(micro_study: tuple) -> None:
    _, wh, events = micro_study
    stages = {k.rsplit("/", 1)[-1] for k in events}
    assert stages == {
        "base_model",
        "prompts",
        "generations",
        "verifications",
        "gap",
        "threshold_sweep",
        "verifier_overlap",
        "calibration",
        "relative_gap",
        "cross_verification",
        "thresholds",
    }
    assert "t/relative_gap" in events and "t/cross_verification" in events
    # a cross cell verifies the generator member's samples: no generations of its own
    assert "t_micro_by_micro_seed1/round_0/verifications" in events
    assert not wh.exists("generations", "t_micro_by_micro_seed1", 0)


def test_relative_gap_table(micro_study: tuple) -> None:
    _, wh, events = micro_study
    table = wh.read("relative_gap", "t")
    rows = table.to_pylist()
    members = {"t_micro": 9.0, "t_micro_seed1": 10.0, "t_extra": 11.0}  # log10 of the FLOPs given in YAML
    assert [r["member"] for r in rows[::7]] == list(members)  # mc and oracle x 3 filter families, majority
    for r in rows:
        assert r["log10_flops"] == members[r["member"]] and r["flops"] == 10 ** members[r["member"]]
        assert r["n_params"] == 13600 and r["experiment"] == "t"
        gap = next(
            g
            for g in wh.read("gap", r["member"], 0).to_pylist()
            if (g["verifier"], g["filter"]) == (r["verifier"], r["filter"])
        )
        assert (r["gap"], r["relative_gap"], r["relative_gap_lo"]) == (
            gap["gap"],
            gap["relative_gap"],
            gap["relative_gap_lo"],
        )
    assert [r["size"] for r in rows[::7]] == ["micro", "micro_seed1", "extra"]
    fitted = 0
    for verifier in ("mc", "oracle"):
        group = [r for r in rows if (r["verifier"], r["filter"]) == (verifier, "quantile")]
        x = [r["log10_flops"] for r in group]
        y = [r["relative_gap"] for r in group]
        ok = [not math.isnan(v) for v in y]
        assert group[0]["n_sizes"] == sum(ok)
        if sum(ok) >= 2:
            slope, intercept, r2 = metrics.linear_fit(x, y)
            assert all(r["slope"] == slope and r["intercept"] == intercept for r in group)
            assert same(group[0]["r2"], r2) and same(group[0]["spearman"], metrics.spearman(x, y))
            fitted += 1
    assert fitted >= 1  # the oracle's relative gap is defined for every member
    png = Path(wh.url(rows[0]["plot"]))
    assert png.read_bytes().startswith(plots.PNG_MAGIC) and matplotlib.image.imread(png).ndim == 3
    meta = events["t/relative_gap"].metadata
    assert meta["plot_relative_gap"].value.startswith("![relative_gap](data:image/png;base64,")
    assert meta["verdict_relative_gap_scales"].value in ("holds", "does not hold", "undecided")
    assert {"fits", "verdicts", "path", "plot_path_relative_gap"} <= set(meta)


def test_cross_verification_table(micro_study: tuple) -> None:
    _, wh, events = micro_study
    rows = wh.read("cross_verification", "t").to_pylist()
    cells = {(r["generator"], r["verifier_model"]) for r in rows}
    assert cells == {(g, v) for g in ("micro", "micro_seed1") for v in ("micro", "micro_seed1")}
    assert {r["verifier"] for r in rows} == {"mc"} and len(rows) == 4 * 3
    for g in ("micro", "micro_seed1"):  # same samples along a generator's row: same J(f)
        assert len({r["j_f"] for r in rows if r["generator"] == g}) == 1
    assert {r["generator_flops"] for r in rows} == {1e9, 1e10}
    assert all(r["self_verification"] == (r["generator"] == r["verifier_model"]) for r in rows)
    ver = wh.read("verifications", "t_micro_by_micro_seed1", 0)
    own = wh.read("verifications", "t_micro_seed1", 0)
    assert set(ver.column("verifier_digest").to_pylist()) == set(own.column("verifier_digest").to_pylist())
    assert set(ver.column("sample_id").to_pylist()) == set(
        wh.read("generations", "t_micro", 0).column("sample_id").to_pylist()
    )
    png = Path(wh.url(rows[0]["plot"]))
    assert matplotlib.image.imread(png).ndim == 3
    assert events["t/cross_verification"].metadata["plot_cross_verification"].value.startswith("![")


def test_thresholds_table(micro_study: tuple) -> None:
    """One row per verifier x axis x member; each member's best setting is the argmax of its own sweep."""
    from selfimprove.assets.thresholds import threshold_verdicts, thresholds_markdown

    _, wh, events = micro_study
    rows = wh.read("thresholds", "t").to_pylist()
    assert len(rows) == 3 * 2 * 3  # (mc, oracle, majority) x (tau, alpha) x 3 members
    for r in rows:
        sweep = [x for x in wh.read("threshold_sweep", r["member"], 0).to_pylist()]
        mine = [x for x in sweep if x["verifier"] == r["verifier"] and x["axis"] == r["axis"]]
        assert r["best_gap"] == max(x["gap"] for x in mine)
        assert r["paper_shape"] == ("interior peak" if r["verifier"] == "mc" else None)
        # every other member's best setting, read off this member's own sweep
        assert sorted(p["source"] for p in r["transfer_from"]) == sorted({x["size"] for x in rows} - {r["size"]})
        for p in r["transfer_from"]:
            (there,) = [x for x in mine if x["setting"] == p["source_best"]]
            assert p["gap_at_source_best"] == there["gap"]
            assert p["transfers"] == (there["gap_hi"] >= r["best_gap"] - 1e-12)
    found = {(v["verifier"], v["axis"]): v for v in threshold_verdicts(rows)}
    assert found[("oracle", "alpha")]["paper_shape"] == ""
    assert found[("oracle", "alpha")]["pairs_transferring"].endswith(" / 6")
    assert "verdicts" in events["t/thresholds"].metadata
    assert "pairwise_transfer" in events["t/thresholds"].metadata
    # the CLI's and bench/real_results.py's tables: a study with one member has no pair to show
    verdicts_md, pairs_md = thresholds_markdown(rows)
    assert verdicts_md.splitlines()[0].startswith("| verifier | axis | paper_shape | shape_holds |")
    assert len(pairs_md.splitlines()) == 2 + 3 * 2 * 3 * 2  # header, rule, each row's two other members
    one = [{**r, "transfer_from": []} for r in rows if r["size"] == rows[0]["size"]]
    assert thresholds_markdown(one)[1] == ""
