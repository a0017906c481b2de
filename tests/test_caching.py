"""Row-level caching of generations and verifications, through real Dagster runs on the micro model.

A rerun reuses every row whose key (weight digest, engine, prompt, sampling, index, seed, code version;
for verifications also the method, the verified sample and the verification config) it finds, and a
fully cached stage constructs no engine at all.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from safetensors.torch import load_file, save_file

import selfimprove.resources.engines as engines_mod
from selfimprove.assets.common import Experiment
from selfimprove.assets.generations import CODE_VERSION as GEN_CODE_VERSION
from selfimprove.assets.sampling import problems_of, sample_and_grade, task_sampling
from selfimprove.definitions import build_definitions
from selfimprove.resources.engine import Engine, Generation, Sampling
from selfimprove.resources.engines import EngineResource, open_engine
from selfimprove.resources.warehouse import Warehouse
from selfimprove.spec import ExperimentSpec
from tests.conftest import MICRO_SPEC, micro_spec

METHODS = ["mc", "cot_binary", "tournament", "oracle"]
K = 2  # cot_binary verifications per sample
N_PROMPTS = 6


def key(stage: str, r: int | None = 0) -> dg.AssetKey:
    return dg.AssetKey(["micro", stage] if r is None else ["micro", f"round_{r}", stage])


GEN, VER = key("generations"), key("verifications")
UPSTREAM = {key("base_model", None), key("prompts", None)}


def spec(n: int = 4, methods: Sequence[str] = METHODS, **overrides: Any) -> ExperimentSpec:
    generation = {**MICRO_SPEC["generation"], "n": n}  # type: ignore[dict-item]
    verification = {"methods": list(methods), "k": K, "max_new_tokens": 24, "tournament_rounds": 2}
    return micro_spec(generation=generation, verification=verification, **overrides)


def materialize(spec: ExperimentSpec, root: Path, assets: set[dg.AssetKey]) -> dg.ExecuteInProcessResult:
    job = build_definitions([spec], root=str(root)).resolve_implicit_global_asset_job_def()
    result = job.get_subset(asset_selection=assets).execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    return result


def materializations(result: dg.ExecuteInProcessResult) -> dict[dg.AssetKey, Any]:
    return {e.asset_key: e.materialization for e in result.get_asset_materialization_events()}


def data_version(result: dg.ExecuteInProcessResult, asset: dg.AssetKey) -> str:
    return materializations(result)[asset].tags["dagster/data_version"]


def meta(result: dg.ExecuteInProcessResult, asset: dg.AssetKey, name: str) -> Any:
    return materializations(result)[asset].metadata[name].value


def rows(table: pa.Table) -> list[dict]:
    """Rows with NaN made comparable."""
    return [
        {k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in table.to_pylist()
    ]


class CountingEngine:
    """Test double: passes every call to a real engine and counts the samples and scores it was asked for."""

    def __init__(self, engine: Engine, counter: dict[str, int]) -> None:
        self.inner, self.counter = engine, counter
        self.engine_name, self.weight_digest = engine.engine_name, engine.weight_digest

    def generate(
        self, prompts: Sequence[str], n: int, sampling: Sampling, seed: int, first_sample: int = 0
    ) -> list[Generation]:
        self.counter["generated"] += len(prompts) * n
        return self.inner.generate(prompts, n, sampling, seed, first_sample=first_sample)

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        self.counter["scored"] += len(prompts)
        return self.inner.score(prompts, continuations)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class RenamedEngine(CountingEngine):
    """Test double: the same weights served under another engine name."""

    def __init__(self, engine: Engine, counter: dict[str, int]) -> None:
        super().__init__(engine, counter)
        self.engine_name = "renamed-test-double"


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Counts engine constructions (`open_engine` calls) and the work the engines were given."""
    EngineResource().release()  # no engine left loaded by an earlier test
    counts = {"constructed": 0, "generated": 0, "scored": 0}

    def counting_open(path: str | Path, model: Any) -> Engine:
        counts["constructed"] += 1
        return CountingEngine(open_engine(path, model), counts)  # type: ignore[return-value]

    monkeypatch.setattr(engines_mod, "open_engine", counting_open)
    yield counts
    EngineResource().release()


@pytest.fixture(scope="module")
def first(micro_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dg.ExecuteInProcessResult]:
    """Round 0 generations and verifications (4 methods) of the micro experiment, computed once."""
    root = tmp_path_factory.mktemp("cache_first") / "warehouse"
    result = materialize(spec(), root, {*UPSTREAM, GEN, VER})
    return root, result


def copy_warehouse(first: tuple[Path, Any], tmp_path: Path) -> Path:
    root = tmp_path / "warehouse"
    shutil.copytree(first[0], root)
    return root


def test_fully_cached_rerun_constructs_no_engine(first: tuple, tmp_path: Path, counter: dict[str, int]) -> None:
    root = copy_warehouse(first, tmp_path)
    wh = Warehouse(root)
    before = {s: wh.read(s, "micro", 0) for s in ("generations", "verifications")}
    methods = before["verifications"].column("method").to_pylist()
    assert len([m for m in methods if m != "tournament"]) == N_PROMPTS * 4 * (1 + K + 1)  # mc, cot_binary, oracle
    result = materialize(spec(), root, {GEN, VER})
    assert counter == {"constructed": 0, "generated": 0, "scored": 0}
    for s, table in before.items():
        assert rows(wh.read(s, "micro", 0)) == rows(table), s
    assert meta(result, VER, "reused_rows") == before["verifications"].num_rows
    assert meta(result, VER, "computed_rows") == 0


def test_same_inputs_same_data_version(first: tuple, tmp_path: Path) -> None:
    root = copy_warehouse(first, tmp_path)
    again = materialize(spec(), root, {*UPSTREAM, GEN, VER})
    for asset in (*UPSTREAM, GEN, VER):
        v1, v2 = data_version(first[1], asset), data_version(again, asset)
        assert v1 == v2 and len(v1) == 32, asset


def test_manifest_digest_is_the_loaded_engines_digest(first: tuple) -> None:
    wh = Warehouse(first[0])
    manifest = wh.read("base_model", "micro").to_pylist()[0]
    engine = open_engine(manifest["path"], spec().model)
    assert engine.weight_digest == manifest["weight_digest"]
    assert engine.engine_name == spec().model.engine
    assert set(wh.read("generations", "micro", 0).column("weight_digest").to_pylist()) == {manifest["weight_digest"]}


def test_checkpoint_manifest_digest_is_the_loaded_engines_digest(
    micro_model: Path, tmp_path: Path, counter: dict[str, int]
) -> None:
    """Round 1 keys come from the checkpoint manifest: they must be those of the weights the engine loads."""
    s = spec(methods=["mc"])
    root = tmp_path / "warehouse"
    round_0 = {GEN, VER, key("filtered"), key("gap"), key("checkpoint")}
    materialize(s, root, {*UPSTREAM, *round_0, key("generations", 1)})
    wh = Warehouse(root)
    ckpt = wh.read("checkpoint", "micro", 0).to_pylist()[0]
    assert open_engine(ckpt["path"], s.model).weight_digest == ckpt["weight_digest"]
    assert set(wh.read("generations", "micro", 1).column("weight_digest").to_pylist()) == {ckpt["weight_digest"]}
    EngineResource().release()
    counter.update(constructed=0, generated=0, scored=0)
    materialize(s, root, {key("generations", 1), key("verifications", 1)})
    assert counter["constructed"] == 1  # round 1 verifications were never computed: only they need the model
    assert counter["generated"] == 0 and counter["scored"] == N_PROMPTS * 4 * 2  # mc: two verdicts per sample


def test_raising_n_computes_only_the_new_samples(first: tuple, tmp_path: Path, counter: dict[str, int]) -> None:
    root = copy_warehouse(first, tmp_path)
    wh = Warehouse(root)
    gen4, ver4 = wh.read("generations", "micro", 0), wh.read("verifications", "micro", 0)
    result = materialize(spec(n=8), root, {GEN, VER})
    gen8, ver8 = wh.read("generations", "micro", 0), wh.read("verifications", "micro", 0)
    assert counter["constructed"] == 1
    assert gen8.num_rows == N_PROMPTS * 8 and len(set(gen8.column("sample_id").to_pylist())) == N_PROMPTS * 8
    old = gen8.filter(pc.less(gen8.column("sample_index"), 4))
    assert rows(old) == rows(gen4)  # the first 4 rows of every prompt, untouched
    # generation: only samples 4..7 of each prompt; cot_binary: K checks of each distinct check prompt of
    # the new samples that no old sample had (a check is cached by its verifier prompt); tournament: every
    # group changed (8 players), so all its matches again
    tournament_matches = sum(1 for r in ver8.to_pylist() if r["method"] == "tournament" and r["raw"] != "bye") // 2
    new_ids = {r["sample_id"] for r in gen8.to_pylist() if r["sample_index"] >= 4}
    new_checks = {
        r["verifier_prompt"] for r in ver8.to_pylist() if r["method"] == "cot_binary" and r["sample_id"] in new_ids
    }
    old_checks = {r["verifier_prompt"] for r in ver4.to_pylist() if r["method"] == "cot_binary"}
    assert 0 < len(new_checks) <= N_PROMPTS * 4 and new_checks & old_checks  # some new answers were checked before
    assert counter["generated"] == N_PROMPTS * 4 + len(new_checks - old_checks) * K + tournament_matches
    assert meta(result, VER, "checks_generated") == len(new_checks - old_checks) * K
    assert meta(result, VER, "checks_reused") == len(new_checks & old_checks) * K
    assert counter["scored"] == N_PROMPTS * 4 * 2  # mc: both verdicts of the new samples only
    reused = N_PROMPTS * 4 * (1 + K + 1)  # mc, cot_binary, oracle rows of the old samples
    assert meta(result, VER, "reused_rows") == reused
    assert meta(result, VER, "computed_rows") == ver8.num_rows - reused
    kept = {r["cache_key"]: r for r in rows(ver4) if r["method"] != "tournament"}
    assert all(kept[r["cache_key"]] == r for r in rows(ver8) if r["cache_key"] in kept)
    assert sum(r["cache_key"] in kept for r in rows(ver8)) == reused


def model_copy(src: Path, dst: Path, perturb: bool = False) -> Path:
    shutil.copytree(src, dst)
    if perturb:  # change one weight of one tensor
        file = dst / "model.safetensors"
        tensors = load_file(file)
        name = sorted(tensors)[0]
        t = tensors[name].clone()
        t.view(-1)[0] += torch.tensor(0.5, dtype=t.dtype)
        tensors[name] = t
        save_file(tensors, file, metadata={"format": "pt"})
    return dst


def test_key_is_weight_content_not_path(micro_model: Path, tmp_path: Path, counter: dict[str, int]) -> None:
    a = model_copy(micro_model, tmp_path / "a")
    b = model_copy(a, tmp_path / "b")  # same weights, another folder and other file times
    for f in b.iterdir():
        os.utime(f, (1_000_000_000, 1_000_000_000))
    c = model_copy(a, tmp_path / "c", perturb=True)
    root = tmp_path / "warehouse"
    wh = Warehouse(root)
    stages = {*UPSTREAM, GEN, VER}

    def run(path: Path) -> tuple[dg.ExecuteInProcessResult, pa.Table, pa.Table]:
        EngineResource().release()
        counter.update(constructed=0, generated=0, scored=0)
        result = materialize(spec(methods=["mc"], model={"path": str(path)}), root, stages)
        return result, wh.read("generations", "micro", 0), wh.read("verifications", "micro", 0)

    _, gen_a, ver_a = run(a)
    assert counter["constructed"] == 1 and counter["generated"] == N_PROMPTS * 4

    result, gen_b, ver_b = run(b)
    assert counter == {"constructed": 0, "generated": 0, "scored": 0}  # every row reused, no model loaded
    assert set(gen_b.column("model_path").to_pylist()) == {str(b)}
    assert rows(gen_b.drop_columns(["model_path"])) == rows(gen_a.drop_columns(["model_path"]))
    assert rows(ver_b) == rows(ver_a) and meta(result, VER, "computed_rows") == 0

    result, gen_c, ver_c = run(c)
    assert counter["constructed"] == 1 and counter["generated"] == N_PROMPTS * 4  # nothing reused
    assert counter["scored"] == N_PROMPTS * 4 * 2 and meta(result, VER, "reused_rows") == 0
    digest_a, digest_c = (set(t.column("weight_digest").to_pylist()) for t in (gen_a, gen_c))
    assert len(digest_c) == 1 and digest_c != digest_a
    assert not set(gen_c.column("cache_key").to_pylist()) & set(gen_a.column("cache_key").to_pylist())
    assert not set(ver_c.column("cache_key").to_pylist()) & set(ver_a.column("cache_key").to_pylist())


def sampling_args(wh: Warehouse) -> dict[str, Any]:
    exp = Experiment(spec())
    return dict(
        task=exp.task,
        problems=problems_of(wh.read("prompts", "micro"), "train"),
        n=4,
        sampling=task_sampling(exp.task, exp.spec.generation.sampling()),
        seed=exp.spec.seed,
        code_version=GEN_CODE_VERSION,
        id_prefix="micro/r0",
        shard_prompts=2,
        extra={"model_path": wh.read("base_model", "micro").to_pylist()[0]["path"]},
    )


def test_engine_name_is_in_the_key(first: tuple) -> None:
    wh = Warehouse(first[0])
    previous = wh.read("generations", "micro", 0).drop_columns(["experiment", "round"])
    real = open_engine(wh.read("base_model", "micro").to_pylist()[0]["path"], spec().model)
    same, renamed = {"generated": 0, "scored": 0}, {"generated": 0, "scored": 0}
    stats: dict[str, int] = {}
    table = sample_and_grade(engine=CountingEngine(real, same), cached=previous, stats=stats, **sampling_args(wh))
    assert same["generated"] == 0 and stats == {"rows": 24, "reused": 24, "computed": 0, "regraded": 0}
    assert rows(table) == rows(previous)
    table = sample_and_grade(engine=RenamedEngine(real, renamed), cached=previous, stats=stats, **sampling_args(wh))
    assert renamed["generated"] == 24 and stats == {"rows": 24, "reused": 0, "computed": 24, "regraded": 0}
    assert set(table.column("engine").to_pylist()) == {"renamed-test-double"}
    assert not set(table.column("cache_key").to_pylist()) & set(previous.column("cache_key").to_pylist())


def test_lazy_engine_factory(first: tuple) -> None:
    """A factory is called only when a row is missing; a stale manifest digest falls back to the loaded one."""
    wh = Warehouse(first[0])
    previous = wh.read("generations", "micro", 0).drop_columns(["experiment", "round"])
    manifest = wh.read("base_model", "micro").to_pylist()[0]

    def never() -> Engine:
        raise AssertionError("the engine was acquired although every row is cached")

    ident = {"weight_digest": manifest["weight_digest"], "engine_name": "transformers"}
    table = sample_and_grade(engine=never, cached=previous, **ident, **sampling_args(wh))
    assert rows(table) == rows(previous)

    calls: list[int] = []

    def real() -> Engine:
        calls.append(1)
        return open_engine(manifest["path"], spec().model)

    stats: dict[str, int] = {}
    stale = {"weight_digest": "0" * 32, "engine_name": "transformers"}
    table = sample_and_grade(engine=real, cached=previous, stats=stats, **stale, **sampling_args(wh))
    assert calls == [1] and stats["reused"] == 24  # keyed again by the weights actually loaded
    assert rows(table) == rows(previous)


def test_shard_groups_fill_a_batch() -> None:
    """After raising N, the new samples of consecutive shards share generate calls of a fresh shard's size."""
    from selfimprove.assets.sampling import _groups

    assert _groups([16, 16, 16], 16) == [[0], [1], [2]]  # fresh: one shard per call, as before
    assert _groups([8, 8, 8, 0, 16, 8], 16) == [[0, 1], [2, 3], [4], [5]]
    assert _groups([0, 0, 0], 16) == [[0, 1, 2]]  # fully cached: nothing to generate
