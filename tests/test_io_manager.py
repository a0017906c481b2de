"""ParquetIOManager: real assets materialized with dagster.materialize."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from selfimprove.resources.io_manager import ParquetIOManager, WarehouseResource, partition_of
from selfimprove.resources.warehouse import Warehouse
from selfimprove.sql import run_query

GEN = dg.AssetKey(["demo", "round_1", "generations"])
VER = dg.AssetKey(["demo", "round_1", "verifications"])
REPORT = dg.AssetKey(["demo", "report"])
seen: dict[str, pa.Table] = {}


@dg.asset(key=GEN)
def generations() -> pa.Table:
    return pa.table({"sample_id": ["s0", "s1", "s2"], "text": ["1", "2", "3"]})


@dg.asset(key=VER, ins={"gens": dg.AssetIn(key=GEN)})
def verifications(gens: pa.Table) -> pa.Table:
    seen["gens"] = gens
    return pa.table({"sample_id": gens.column("sample_id"), "ok": [True, False, True]})


@dg.asset(key=REPORT, ins={"ver": dg.AssetIn(key=VER)})
def report(ver: pa.Table) -> pa.Table:
    return pa.table({"accuracy": [sum(ver.column("ok").to_pylist()) / len(ver)]})


@dg.asset(key=dg.AssetKey(["demo", "round_2", "sharded"]))
def sharded(warehouse: WarehouseResource) -> pa.Table:
    wh = warehouse.get()
    for i in (1, 0):
        wh.write_shard("sharded", "demo", 2, i, pa.table({"i": [i]}), run_key="k")
    table = pa.concat_tables(wh.read_shards("sharded", "demo", 2, "k").values())
    wh.clear_shards("sharded", "demo", 2, "k")
    return table


@dg.asset(key=dg.AssetKey(["demo", "round_0", "bad"]))
def bad() -> dict:
    return {"not": "a table"}


def test_partition_of() -> None:
    assert partition_of(GEN) == ("generations", "demo", 1)
    assert partition_of(REPORT) == ("report", "demo", None)
    with pytest.raises(ValueError, match="not"):
        partition_of(dg.AssetKey(["generations"]))


def test_materialize_round_trip(tmp_path: Path) -> None:
    seen.clear()
    result = dg.materialize(
        [generations, verifications, report], resources={"io_manager": ParquetIOManager(root=str(tmp_path))}
    )
    assert result.success
    wh = Warehouse(tmp_path)
    assert wh.stages() == ["generations", "report", "verifications"]
    assert (tmp_path / "generations/experiment=demo/round=1/data.parquet").is_file()
    assert (tmp_path / "report/experiment=demo/data.parquet").is_file()
    # load_input brings the partition columns back
    assert seen["gens"].column_names == ["sample_id", "text", "experiment", "round"]
    assert seen["gens"].column("round").to_pylist() == [1, 1, 1]
    assert wh.read("report", "demo").to_pylist() == [{"accuracy": 2 / 3, "experiment": "demo"}]
    # output metadata: path and row count
    mats = {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}
    meta = mats[VER]
    assert meta["dagster/row_count"].value == 3
    assert meta["path"].value == str(tmp_path / "verifications/experiment=demo/round=1/data.parquet")
    out = run_query(tmp_path, "SELECT round, count(*) AS n FROM verifications WHERE ok GROUP BY round")
    assert out.to_pylist() == [{"round": 1, "n": 2}]


def test_non_table_output_is_a_clear_type_error(tmp_path: Path) -> None:
    result = dg.materialize([bad], resources={"io_manager": ParquetIOManager(root=str(tmp_path))}, raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node("demo__round_0__bad")
    assert failure is not None
    assert "stores pyarrow.Table values" in str(failure.error)
    assert "builtins.dict" in str(failure.error)
    assert Warehouse(tmp_path).stages() == []


def test_warehouse_resource_with_shards(tmp_path: Path) -> None:
    root = str(tmp_path)
    result = dg.materialize(
        [sharded], resources={"io_manager": ParquetIOManager(root=root), "warehouse": WarehouseResource(root=root)}
    )
    assert result.success
    assert Warehouse(root).read("sharded", "demo", 2).column("i").to_pylist() == [0, 1]
    assert not list((tmp_path / "_staging").rglob("*.parquet"))
