"""Experiment specs: the shipped YAML files load, and a bad file fails with a SpecError naming the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from selfimprove.definitions import EXPERIMENTS_DIR
from selfimprove.spec import ExperimentSpec, SpecError, load_spec

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT_FILES = sorted((REPO / "experiments").glob("*.yaml"))
VALID = {"name": "ok_spec", "model": {"embedded": "micro"}}


def write(tmp_path: Path, data: object, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_demo_yaml_loads() -> None:
    spec = load_spec(REPO / "experiments" / "demo.yaml")
    assert isinstance(spec, ExperimentSpec)
    assert spec.name == "demo"
    assert spec.model.embedded == "default" and spec.model.path is None
    assert spec.task.name == "arithmetic"
    assert (spec.task.train_prompts, spec.task.eval_prompts) == (96, 200)
    assert spec.generation.n == 8 and spec.generation.temperature == 0.8
    assert spec.verification.methods == ["cot_binary"]
    assert spec.filter.kind == "quantile" and spec.filter.alpha == 0.5
    assert spec.distill.mode == "continue"
    assert spec.rounds == 3 and spec.seed == 0


def test_experiments_dir_is_the_repo_folder() -> None:
    assert Path(EXPERIMENTS_DIR).resolve() == (REPO / "experiments").resolve()
    assert EXPERIMENT_FILES, "experiments/ holds no *.yaml"


@pytest.mark.parametrize("path", EXPERIMENT_FILES, ids=lambda p: p.name)
def test_every_experiment_yaml_loads(path: Path) -> None:
    spec = load_spec(path)
    assert spec.rounds >= 1
    assert [spec.model.embedded, spec.model.pretrained, spec.model.path].count(None) == 2


def test_experiment_names_are_unique() -> None:
    names = [load_spec(p).name for p in EXPERIMENT_FILES]
    assert len(names) == len(set(names)), names


def test_valid_temp_spec_loads(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, VALID))
    assert spec.name == "ok_spec" and spec.model.embedded == "micro"
    assert spec.generation.n == 8  # defaults fill the rest


# (case id, spec data, the field the message must name, a fragment of the reason)
BAD_SPECS = [
    ("unknown_top_field", {**VALID, "generaton": {"n": 2}}, "generaton", "Extra inputs are not permitted"),
    ("unknown_nested_field", {**VALID, "generation": {"nn": 2}}, "generation.nn", "Extra inputs are not permitted"),
    ("wrong_type", {**VALID, "generation": {"n": "eight"}}, "generation.n", "valid integer"),
    ("n_zero", {**VALID, "generation": {"n": 0}}, "generation.n", "greater than 0"),
    ("name_with_dash", {**VALID, "name": "my-exp"}, "name", "'my-exp' is not a valid Dagster name"),
    ("name_with_space", {**VALID, "name": "my exp"}, "name", "'my exp' is not a valid Dagster name"),
    ("name_with_dot", {**VALID, "name": "my.exp"}, "name", "not a valid Dagster name"),
    ("group_with_dash", {**VALID, "group": "real/small-models"}, "group", "'small-models' is not a valid Dagster name"),
    ("group_empty_level", {**VALID, "group": "real//x"}, "group", "'' is not a valid Dagster name"),
    ("name_studies", {**VALID, "name": "studies"}, "name", "'studies' is the group of the studies"),
    ("group_studies", {**VALID, "group": "studies/mine"}, "group", "'studies' is the group of the studies"),
    ("both_model_sources", {**VALID, "model": {"embedded": "micro", "path": "/models/x"}}, "model", "exactly one"),
    ("no_model_source", {**VALID, "model": {}}, "model", "exactly one"),
    ("no_model_at_all", {"name": "ok_spec"}, "model", "Field required"),
    ("pretrained_and_path", {**VALID, "model": {"pretrained": "smollm2-135m", "path": "/m"}}, "model", "exactly one"),
    ("unknown_pretrained", {**VALID, "model": {"pretrained": "gpt5"}}, "model.pretrained", "'gpt5'"),
    ("unknown_method", {**VALID, "verification": {"methods": ["magic"]}}, "verification.methods.0", "'mc'"),
    ("empty_methods", {**VALID, "verification": {"methods": []}}, "verification.methods", "at least one method"),
    ("rounds_zero", {**VALID, "rounds": 0}, "rounds", "greater than or equal to 1"),
    ("bad_filter_kind", {**VALID, "filter": {"kind": "median"}}, "filter.kind", "'quantile'"),
    ("top_p_above_one", {**VALID, "generation": {"top_p": 1.5}}, "generation.top_p", "less than or equal to 1"),
    # issue 14.6: names that would fail only at run time, and ints that are not ints (or absurdly large)
    ("unknown_task", {**VALID, "task": {"name": "gsm9k"}}, "task.name", "unknown task 'gsm9k'"),
    ("unknown_size", {**VALID, "model": {"embedded": "huge"}}, "model.embedded", "unknown embedded size 'huge'"),
    ("unknown_dtype", {**VALID, "model": {"embedded": "micro", "dtype": "fp33"}}, "model.dtype", "'float32'"),
    ("unknown_device", {**VALID, "model": {"embedded": "micro", "device": "gpu"}}, "model.device", "unknown device"),
    ("distill_dtype", {**VALID, "distill": {"dtype": "half-ish"}}, "distill.dtype", "'bfloat16'"),
    ("bool_as_int", {**VALID, "generation": {"n": True}}, "generation.n", "valid integer"),
    ("float_as_int", {**VALID, "rounds": 2.0}, "rounds", "valid integer"),
    ("huge_n", {**VALID, "generation": {"n": 100_000_000_000}}, "generation.n", "less than or equal to 100000"),
    ("negative_seed", {**VALID, "seed": -1}, "seed", "greater than or equal to 0"),
]


@pytest.mark.parametrize(("data", "field", "reason"), [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS])
def test_bad_spec_names_file_and_field(tmp_path: Path, data: dict, field: str, reason: str) -> None:
    path = write(tmp_path, data, "bad_spec.yaml")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: invalid experiment spec: "), msg
    assert f"{field}: " in msg, msg
    assert reason in msg, msg


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    path = write(tmp_path, {**VALID, "name": "a-b", "generation": {"n": 0}, "seeed": 1})
    with pytest.raises(SpecError) as info:
        load_spec(path)
    msg = str(info.value)
    assert str(path) in msg
    for field in ("name: ", "generation.n: ", "seeed: "):
        assert field in msg, msg


def test_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nmodel: [embedded: micro\n", "broken.yaml")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: not valid YAML: "), msg
    assert "line 2" in msg, msg  # the YAML error's position travels with it


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"], ids=["empty", "list", "scalar"])
def test_yaml_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text, "odd.yaml")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: invalid experiment spec: <top>: "), msg
    assert "valid dictionary" in msg, msg


def test_non_utf8_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\nmodel: {embedded: micro}\n".encode("latin-1"))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{path}: not UTF-8 text (byte 0xe9 at offset 9)"


def test_one_bad_file_leaves_the_good_experiments(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from selfimprove.definitions import SPEC_ERRORS, experiment_specs, spec_error

    write(tmp_path, {**VALID, "name": "good"}, "good.yaml")
    write(tmp_path, {**VALID, "name": "bad", "task": {"name": "nope"}}, "bad.yaml")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    with caplog.at_level("ERROR"):
        specs = experiment_specs(tmp_path)
    assert [s.name for s in specs] == ["good"]
    assert f"{tmp_path / 'bad.yaml'}: invalid experiment spec: task.name: " in caplog.text
    assert f"{tmp_path / 'binary.yaml'}: not UTF-8 text" in caplog.text
    assert "unknown task 'nope'" in (spec_error("bad") or "")
    SPEC_ERRORS.clear()


def test_cli_names_the_file_of_an_experiment_that_did_not_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from selfimprove import definitions
    from selfimprove.runs import run_job

    monkeypatch.setitem(definitions.SPEC_ERRORS, "experiments/broken.yaml", "experiments/broken.yaml: not UTF-8 text")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    assert run_job("broken_job") is False
    assert "no job broken_job: experiments/broken.yaml: not UTF-8 text" in capsys.readouterr().err


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{path}: no such experiment file"


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(SpecError, ValueError)


def test_spec_is_frozen() -> None:
    spec = ExperimentSpec.model_validate(VALID)
    with pytest.raises(Exception, match="frozen"):
        spec.rounds = 5  # type: ignore[misc]


def test_pretrained_model_by_name(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, {**VALID, "model": {"pretrained": "smollm2-135m"}}))
    assert spec.model.pretrained == "smollm2-135m" and spec.model.path is None
    assert spec.verification.style == "fewshot"  # a real model gets natural-language verifier prompts
