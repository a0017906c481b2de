"""The Definitions object: it loads and validates, serves every demo asset with metadata, and the round
factory's lineage matches a written-out snapshot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from selfimprove.definitions import build_definitions, defs
from selfimprove.spec import load_spec
from tests.conftest import micro_spec

REPO = Path(__file__).resolve().parents[1]
DEMO = load_spec(REPO / "experiments" / "demo.yaml")
ROUND_STAGES = ("generations", "verifications", "gap", "filtered", "checkpoint", "eval")
ANALYSES = ("threshold_sweep", "verifier_overlap", "calibration")


def demo_keys() -> set[str]:
    keys = {"demo/base_model", "demo/prompts", "demo/report", f"demo/round_{DEMO.rounds}/eval"}
    keys |= {f"demo/round_{r}/{stage}" for r in range(DEMO.rounds) for stage in ROUND_STAGES + ANALYSES}
    return keys


def parent_map(d: dg.Definitions) -> dict[str, list[str]]:
    graph = d.resolve_asset_graph()
    return {
        k.to_user_string(): sorted(p.to_user_string() for p in graph.get(k).parent_keys)
        for k in graph.get_all_asset_keys()
    }


def test_module_defs_validate() -> None:
    assert isinstance(defs, dg.Definitions)
    dg.Definitions.validate_loadable(defs)


def test_every_demo_asset_key_exists() -> None:
    assert DEMO.rounds == 3
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    expected = demo_keys()
    assert len(expected) == 2 + 9 * DEMO.rounds + 2
    assert expected <= keys, sorted(expected - keys)
    assert {k for k in keys if k.startswith("demo/")} == expected  # and nothing else under demo/


def test_every_asset_has_description_kinds_code_version_and_group() -> None:
    graph = defs.resolve_asset_graph()
    demo_groups = {"demo"} | {f"demo/round_{r}" for r in range(DEMO.rounds + 1)}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assert node.description and node.description.strip(), name
        assert node.kinds, name
        assert node.code_version, name
        if key.path[0] == "demo":
            assert node.group_name in demo_groups, (name, node.group_name)


def test_global_lineage_has_one_top_level_group_per_experiment_and_study() -> None:
    """Dagster nests groups at `/`: 55 flat groups (one per round) put the demo off the global lineage's first
    view; nested, its top level is one tile per experiment (or its spec's `group`) and one for the studies."""
    from selfimprove.definitions import experiment_specs, study_specs

    graph = defs.resolve_asset_graph()
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()}
    top = {g.split("/")[0] for g in groups}
    assert top == {"demo", "demo_updates", "iterate", "smollm2", "studies"}  # what experiments/ holds today
    assert {(s.group or s.name).split("/")[0] for s in experiment_specs()} | {"studies"} == top
    assert {g for g in groups if g.count("/") == 1 and g.startswith("studies/")} == {
        f"studies/{s.name}" for s in study_specs()
    }
    assert len(top) <= 7  # what the lineage's first view shows at 1600x1000 (tests/browser: the demo in it)
    assert graph.get(dg.AssetKey(["demo", "round_1", "gap"])).group_name == "demo/round_1"
    assert graph.get(dg.AssetKey(["smollm2_gsm8k", "round_0", "gap"])).group_name == "smollm2/smollm2_gsm8k/round_0"
    assert graph.get(dg.AssetKey(["scaling_xs", "round_0", "gap"])).group_name == "studies/scaling/scaling_xs/round_0"
    assert graph.get(dg.AssetKey(["scaling_xs", "base_model"])).group_name == "studies/scaling/scaling_xs"
    assert graph.get(dg.AssetKey(["scaling", "relative_gap"])).group_name == "studies/scaling"


def test_demo_groups_and_kinds() -> None:
    graph = defs.resolve_asset_graph()

    def node(key: str) -> object:
        return graph.get(dg.AssetKey.from_user_string(key))

    assert node("demo/base_model").group_name == "demo"
    assert node("demo/prompts").group_name == "demo"
    assert node("demo/report").group_name == "demo"
    for r in range(DEMO.rounds):
        for stage in ROUND_STAGES:
            assert node(f"demo/round_{r}/{stage}").group_name == f"demo/round_{r}"
    assert node(f"demo/round_{DEMO.rounds}/eval").group_name == f"demo/round_{DEMO.rounds}"
    assert node("demo/round_0/checkpoint").kinds == {"pytorch", "peft", "safetensors"}
    assert node("demo/round_0/gap").kinds == {"parquet"}
    assert node("demo/base_model").kinds == {"pytorch", "safetensors"}


def test_jobs_exist() -> None:
    assert {j.name for j in defs.jobs} >= {"demo_job"}
    job = defs.resolve_job_def("demo_job")
    assert job.description == DEMO.description

    micro = build_definitions([micro_spec()], root="/nonexistent/warehouse")
    assert [j.name for j in micro.jobs] == ["micro_job"]
    micro_job = micro.resolve_job_def("micro_job")
    assert {k.to_user_string() for k in micro_job.asset_layer.executable_asset_keys} == set(parent_map(micro))


# The round factory's lineage for the 2-round micro spec. A refactor that changes any edge must update this.
MICRO_LINEAGE = {
    "micro/base_model": [],
    "micro/prompts": [],
    "micro/report": [
        "micro/round_0/eval",
        "micro/round_0/gap",
        "micro/round_0/generations",
        "micro/round_0/verifications",
        "micro/round_1/eval",
        "micro/round_1/gap",
        "micro/round_1/generations",
        "micro/round_1/verifications",
        "micro/round_2/eval",
    ],
    "micro/round_0/checkpoint": ["micro/base_model", "micro/round_0/filtered", "micro/round_0/gap"],
    "micro/round_0/eval": ["micro/base_model", "micro/prompts"],
    "micro/round_0/threshold_sweep": ["micro/round_0/generations", "micro/round_0/verifications"],
    "micro/round_0/verifier_overlap": ["micro/round_0/generations", "micro/round_0/verifications"],
    "micro/round_0/calibration": ["micro/round_0/generations", "micro/round_0/verifications"],
    "micro/round_0/filtered": ["micro/round_0/generations", "micro/round_0/verifications"],
    "micro/round_0/gap": [
        "micro/round_0/filtered",
        "micro/round_0/generations",
        "micro/round_0/verifications",
    ],
    "micro/round_0/generations": ["micro/base_model", "micro/prompts"],
    "micro/round_0/verifications": ["micro/base_model", "micro/prompts", "micro/round_0/generations"],
    "micro/round_1/checkpoint": [
        "micro/base_model",
        "micro/round_0/checkpoint",
        "micro/round_1/filtered",
        "micro/round_1/gap",
    ],
    "micro/round_1/eval": ["micro/prompts", "micro/round_0/checkpoint"],
    "micro/round_1/threshold_sweep": ["micro/round_1/generations", "micro/round_1/verifications"],
    "micro/round_1/verifier_overlap": ["micro/round_1/generations", "micro/round_1/verifications"],
    "micro/round_1/calibration": ["micro/round_1/generations", "micro/round_1/verifications"],
    "micro/round_1/filtered": ["micro/round_1/generations", "micro/round_1/verifications"],
    "micro/round_1/gap": [
        "micro/round_1/filtered",
        "micro/round_1/generations",
        "micro/round_1/verifications",
    ],
    "micro/round_1/generations": ["micro/prompts", "micro/round_0/checkpoint"],
    "micro/round_1/verifications": ["micro/prompts", "micro/round_0/checkpoint", "micro/round_1/generations"],
    "micro/round_2/eval": ["micro/prompts", "micro/round_1/checkpoint"],
}

MICRO_CHECKS = {
    "micro/round_0/filtered:not_empty",
    "micro/round_0/gap:gap_positive",
    "micro/round_0/gap:parse_failure_rate",
    "micro/round_1/eval:heldout_not_worse",
    "micro/round_1/filtered:not_empty",
    "micro/round_1/gap:gap_positive",
    "micro/round_1/gap:parse_failure_rate",
    "micro/round_2/eval:heldout_not_worse",
    "micro/round_0/generations:samples_complete",
    "micro/round_1/generations:samples_complete",
    "micro/round_0/verifications:every_sample_verified",
    "micro/round_1/verifications:every_sample_verified",
}


def test_micro_lineage_snapshot() -> None:
    micro = build_definitions([micro_spec()], root="/nonexistent/warehouse")
    assert parent_map(micro) == MICRO_LINEAGE


def test_micro_check_snapshot() -> None:
    micro = build_definitions([micro_spec()], root="/nonexistent/warehouse")
    checks = {c.to_user_string() for c in micro.resolve_asset_graph().asset_check_keys}
    assert checks >= MICRO_CHECKS
    assert checks == MICRO_CHECKS
    job = micro.resolve_job_def("micro_job")
    assert {c.to_user_string() for c in job.asset_layer.asset_graph.asset_check_keys} == checks


def test_every_eval_after_distillation_is_checked() -> None:
    micro = build_definitions([micro_spec()], root="/nonexistent/warehouse")
    checks = {c.to_user_string() for c in micro.resolve_asset_graph().asset_check_keys}
    assert {f"micro/round_{r}/eval:heldout_not_worse" for r in (1, 2)} <= checks


def test_lineage_scales_with_rounds() -> None:
    for rounds in (1, 3):
        lineage = parent_map(build_definitions([micro_spec(rounds=rounds)], root="/nonexistent/warehouse"))
        assert len(lineage) == 2 + 9 * rounds + 2
        last = f"micro/round_{rounds - 1}/checkpoint"
        assert lineage[f"micro/round_{rounds}/eval"] == ["micro/prompts", last]
        assert lineage["micro/report"] == sorted(
            [f"micro/round_{r}/{s}" for r in range(rounds) for s in ("gap", "generations", "verifications")]
            + [f"micro/round_{r}/eval" for r in range(rounds + 1)]
        )


def test_two_experiments_share_one_definitions() -> None:
    both = build_definitions([micro_spec(), micro_spec(name="micro_b")], root="/nonexistent/warehouse")
    dg.Definitions.validate_loadable(both)
    assert {j.name for j in both.jobs} == {"micro_job", "micro_b_job"}
    lineage = parent_map(both)
    assert lineage["micro_b/round_1/generations"] == ["micro_b/prompts", "micro_b/round_0/checkpoint"]
    assert len(lineage) == 2 * len(MICRO_LINEAGE)


def test_dagster_definitions_validate_cli(tmp_path: Path) -> None:
    dagster = Path(sys.executable).with_name("dagster")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Validation successful for code location selfimprove.definitions" in out, out
