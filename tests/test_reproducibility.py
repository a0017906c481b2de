"""Same seed, fresh warehouse and fresh model home: the 2-round micro experiment reproduces bit for bit.

Each run gets its own SELFIMPROVE_HOME (so every LoRA checkpoint is trained again, never reused) holding a
copy of the session's micro model (so the base model is not pretrained again).
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from selfimprove.definitions import build_definitions
from selfimprove.resources.models import load_model, weight_digest
from selfimprove.resources.warehouse import Warehouse
from tests.conftest import micro_spec

ROUNDS = 2
LOCATION_COLUMNS = ("model_path",)  # generation provenance: a folder under the run's own SELFIMPROVE_HOME


@dataclass(frozen=True)
class Run:
    home: Path
    wh: Warehouse
    result: dg.ExecuteInProcessResult

    def sorted(self, stage: str, r: int, by: list[tuple[str, str]]) -> pa.Table:
        return self.wh.read(stage, "micro", r).sort_by(by)

    def generations(self, r: int) -> pa.Table:
        return self.sorted("generations", r, [("sample_id", "ascending")])

    def verifications(self, r: int) -> pa.Table:
        keys = ["sample_id", "method", "verification_index"]
        return self.sorted("verifications", r, [(k, "ascending") for k in keys])

    def checkpoint(self, r: int) -> dict:
        return self.wh.read("checkpoint", "micro", r).to_pylist()[0]

    def base(self) -> dict:
        return self.wh.read("base_model", "micro").to_pylist()[0]


def rows(table: pa.Table) -> list[dict]:
    """The table's rows, NaN made comparable (pyarrow's Table.equals holds NaN != NaN)."""
    return [
        {k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()} for row in table.to_pylist()
    ]


def same(ta: pa.Table, tb: pa.Table) -> bool:
    return ta.schema == tb.schema and rows(ta) == rows(tb)


def fresh_home(tmp: Path, micro_model: Path) -> Path:
    home = tmp / "home"
    shutil.copytree(micro_model, home / "models" / "embedded" / "toy-micro-seed0")
    return home


def run_micro(
    tmp: Path, micro_model: Path, monkeypatch: pytest.MonkeyPatch, seed: int = 0, subset: set | None = None
) -> Run:
    home = fresh_home(tmp, micro_model)
    with monkeypatch.context() as m:
        m.setenv("SELFIMPROVE_HOME", str(home))
        wh_root = tmp / "warehouse"
        job = build_definitions([micro_spec(seed=seed)], root=str(wh_root)).resolve_job_def("micro_job")
        if subset is not None:
            job = job.get_subset(asset_selection=subset)
        result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    return Run(home, Warehouse(str(wh_root)), result)


@pytest.fixture(scope="module")
def runs(micro_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Run]:
    with pytest.MonkeyPatch.context() as mp:
        a = run_micro(tmp_path_factory.mktemp("repro_a"), micro_model, mp)
        b = run_micro(tmp_path_factory.mktemp("repro_b"), micro_model, mp)
    return a, b


def test_each_run_used_its_own_home(runs: tuple[Run, Run], micro_model: Path) -> None:
    a, b = runs
    assert a.home != b.home
    expected = weight_digest(load_model(micro_model)[0])
    for run in runs:
        base = run.base()
        assert base["path"] == "models/embedded/toy-micro-seed0"  # relative to the run's own home
        assert base["weight_digest"] == expected  # the copy, not a retrained model
        assert not list((run.home / "models" / "embedded").glob(".tmp-*"))
        for r in range(ROUNDS):
            ckpt = run.checkpoint(r)
            assert ckpt["reused"] is False  # trained in this run, not picked up from another home
            assert not Path(ckpt["path"]).is_absolute() and (run.home / ckpt["path"] / "manifest.json").is_file()


def test_checkpoint_weights_identical(runs: tuple[Run, Run]) -> None:
    a, b = runs
    for r in range(ROUNDS):
        ca, cb = a.checkpoint(r), b.checkpoint(r)
        assert ca["weight_digest"] == cb["weight_digest"], r
        assert ca["n_examples"] == cb["n_examples"] > 0
        assert ca["loss_curve"] == cb["loss_curve"]
        assert ca["seed"] == cb["seed"]
        assert weight_digest(load_model(a.home / ca["path"])[0]) == ca["weight_digest"]  # as loaded from disk
    assert a.checkpoint(0)["weight_digest"] != a.checkpoint(1)["weight_digest"]
    assert a.checkpoint(0)["weight_digest"] != a.base()["weight_digest"]


def test_generation_rows_identical(runs: tuple[Run, Run]) -> None:
    a, b = runs
    for r in range(ROUNDS):
        ga, gb = a.generations(r), b.generations(r)
        assert ga.num_rows == 6 * 4
        assert ga.schema == gb.schema
        model = a.base() if r == 0 else a.checkpoint(r - 1)
        assert set(ga.column("weight_digest").to_pylist()) == {model["weight_digest"]}
        # every column but the model folder (under each run's own home) is equal, row for row
        for run, table in ((a, ga), (b, gb)):
            own = run.base() if r == 0 else run.checkpoint(r - 1)
            assert set(table.column("model_path").to_pylist()) == {own["path"]}
        kept = [c for c in ga.column_names if c not in LOCATION_COLUMNS]
        assert len(kept) == len(ga.column_names) - len(LOCATION_COLUMNS)
        assert same(ga.select(kept), gb.select(kept)), r


def test_generation_rows_identical_including_paths(runs: tuple[Run, Run]) -> None:
    """The full tables, with model_path made relative to each run's home."""
    a, b = runs

    def relative(run: Run, table: pa.Table) -> pa.Table:
        home = str(run.home.resolve())
        paths = [p.replace(home, "<home>") for p in table.column("model_path").to_pylist()]
        idx = table.column_names.index("model_path")
        return table.set_column(idx, "model_path", pa.array(paths, pa.string()))

    for r in range(ROUNDS):
        ra, rb = relative(a, a.generations(r)), relative(b, b.generations(r))
        if r == 0:
            assert same(ra, rb)
        else:  # a checkpoint folder is named by a key that hashes the absolute base model path
            assert same(ra.drop_columns(["model_path"]), rb.drop_columns(["model_path"]))


def test_verification_rows_identical(runs: tuple[Run, Run]) -> None:
    a, b = runs
    for r in range(ROUNDS):
        va, vb = a.verifications(r), b.verifications(r)
        assert va.num_rows == 6 * 4
        assert va.schema == vb.schema
        assert same(va, vb), r
        assert set(va.column("sample_id").to_pylist()) == set(a.generations(r).column("sample_id").to_pylist())


def test_filtered_gap_and_eval_identical(runs: tuple[Run, Run]) -> None:
    a, b = runs
    for r in range(ROUNDS):
        for stage in ("filtered", "gap"):
            assert same(a.wh.read(stage, "micro", r), b.wh.read(stage, "micro", r)), (stage, r)
    for r in range(ROUNDS + 1):
        by = [("sample_id", "ascending")]
        assert same(a.sorted("eval", r, by), b.sorted("eval", r, by)), r
    assert same(a.wh.read("report", "micro"), b.wh.read("report", "micro"))


def test_other_seed_gives_other_generations(
    runs: tuple[Run, Run], micro_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = runs
    keys = {dg.AssetKey(["micro", s]) for s in ("base_model", "prompts")}
    keys.add(dg.AssetKey(["micro", "round_0", "generations"]))
    c = run_micro(tmp_path, micro_model, monkeypatch, seed=1, subset=keys)
    assert {e.asset_key for e in c.result.get_asset_materialization_events()} == keys
    assert c.base()["weight_digest"] == a.base()["weight_digest"]  # the seed is the experiment's, not the model's
    ga, gc = a.generations(0), c.generations(0)
    assert gc.num_rows == ga.num_rows == 6 * 4
    assert set(gc.column("seed").to_pylist()) == {1} and set(ga.column("seed").to_pylist()) == {0}
    assert not same(ga.drop_columns(["model_path"]), gc.drop_columns(["model_path"]))
    assert set(ga.column("sample_seed").to_pylist()).isdisjoint(gc.column("sample_seed").to_pylist())
    assert set(ga.column("cache_key").to_pylist()).isdisjoint(gc.column("cache_key").to_pylist())
    assert ga.column("completion").to_pylist() != gc.column("completion").to_pylist()
