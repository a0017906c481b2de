"""Verification resumes within the stage from its finished prompt shards; eval has a row cache.

Real Dagster runs on the micro model. An interrupted verification (a test double that fails once a
shard is on disk) leaves its finished shards; the rerun reuses them, computes only the rest and ends
with exactly the table of an uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

import selfimprove.resources.engines as engines_mod
from selfimprove.assets.shards import shard_by_prompt
from selfimprove.definitions import build_definitions
from selfimprove.resources.engine import Engine
from selfimprove.resources.engines import EngineResource, open_engine
from selfimprove.resources.warehouse import Warehouse
from tests.test_caching import GEN, UPSTREAM, VER, CountingEngine, key, materialize, meta, rows, spec


class FailsAfterFirstShard(CountingEngine):
    """Test double: a real engine that raises once any verification shard has been written (a crash)."""

    def __init__(self, engine: Engine, counter: dict[str, int], staging: Path) -> None:
        super().__init__(engine, counter)
        self.staging = staging

    def _crash_if_a_shard_is_done(self) -> None:
        if list(self.staging.glob("verifications/**/shard-*.parquet")):
            raise RuntimeError("injected crash after the first verification shard")

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        self._crash_if_a_shard_is_done()
        return super().generate(*args, **kwargs)

    def score(self, *args: Any, **kwargs: Any) -> Any:
        self._crash_if_a_shard_is_done()
        return super().score(*args, **kwargs)


def test_shards_group_prompts_in_first_seen_order() -> None:
    assert shard_by_prompt(["a", "a", "b", "c", "b", "d", "e"], 2) == [[0, 1, 2, 4], [3, 5], [6]]
    assert shard_by_prompt([], 3) == []
    with pytest.raises(ValueError, match="shard_prompts"):
        shard_by_prompt(["a"], 0)


def test_killed_verification_resumes_from_its_shards(
    micro_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = spec()  # mc, cot_binary (k=2), tournament, oracle; 6 prompts in shards of 2
    reference_root, root = tmp_path / "reference", tmp_path / "warehouse"
    materialize(s, reference_root, {*UPSTREAM, GEN, VER})
    reference = Warehouse(reference_root).read("verifications", "micro", 0)
    materialize(s, root, {*UPSTREAM, GEN})
    EngineResource().release()

    counts = {"generated": 0, "scored": 0}
    staging = root / "_staging"
    monkeypatch.setattr(
        engines_mod, "open_engine", lambda p, m: FailsAfterFirstShard(open_engine(p, m), counts, staging)
    )
    job = (
        build_definitions([s], root=str(root)).resolve_implicit_global_asset_job_def().get_subset(asset_selection={VER})
    )
    assert not job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False).success
    shard_files = list(staging.glob("verifications/experiment=micro/round=0/*/shard-*.parquet"))
    assert len(shard_files) == 1  # the first of three shards finished before the crash
    done = Warehouse(root).read_shards("verifications", "micro", 0, shard_files[0].parent.name)[0]
    EngineResource().release()

    monkeypatch.setattr(engines_mod, "open_engine", lambda p, m: CountingEngine(open_engine(p, m), counts))
    result = materialize(s, root, {VER})
    EngineResource().release()
    again = Warehouse(root).read("verifications", "micro", 0)
    assert rows(again) == rows(reference)
    assert meta(result, VER, "reused_rows") == done.num_rows > 0
    assert meta(result, VER, "computed_rows") == reference.num_rows - done.num_rows
    assert not list(staging.glob("verifications/**/*.parquet"))  # the shards are gone once the table is written


def test_eval_rows_are_cached(micro_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = spec()
    root = tmp_path / "warehouse"
    ev = key("eval")
    materialize(s, root, {*UPSTREAM, ev})
    first = Warehouse(root).read("eval", "micro", 0)
    assert first.num_rows == 4 * (1 + 2)  # 4 held-out prompts: greedy + 2 samples
    EngineResource().release()
    counts = {"constructed": 0, "generated": 0, "scored": 0}

    def counting_open(path: str | Path, model: Any) -> Engine:
        counts["constructed"] += 1
        return CountingEngine(open_engine(path, model), counts)  # type: ignore[return-value]

    monkeypatch.setattr(engines_mod, "open_engine", counting_open)
    materialize(s, root, {ev})
    assert counts == {"constructed": 0, "generated": 0, "scored": 0}  # no model loaded for a cached eval
    assert rows(Warehouse(root).read("eval", "micro", 0)) == rows(first)
    materialize(spec(eval={"samples": 3}), root, {ev})  # one more sample per prompt: only those are computed
    EngineResource().release()
    assert counts["constructed"] == 1 and counts["generated"] == 4
    table = Warehouse(root).read("eval", "micro", 0)
    assert table.num_rows == 4 * (1 + 3)
