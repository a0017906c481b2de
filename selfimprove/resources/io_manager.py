"""Dagster IO manager that stores asset values (pyarrow Tables) in the Parquet warehouse, and a
resource giving assets the `Warehouse` itself (for shards of resumable stages).

Asset keys map to partitions: `[E, "round_<r>", stage]` -> (stage, E, r) and `[E, stage]` -> (stage, E, None).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

import dagster as dg
import pyarrow as pa

from selfimprove import faults
from selfimprove.resources.warehouse import Warehouse
from selfimprove.variants import current

_ROUND_RE = re.compile(r"round_(\d+)")


def partition_of(key: dg.AssetKey) -> tuple[str, str, int | None]:
    """(stage, experiment, round) of an asset key; ValueError for any other shape."""
    path = key.path
    if len(path) == 3 and (m := _ROUND_RE.fullmatch(path[1])):
        return path[2], path[0], int(m.group(1))
    if len(path) == 2:
        return path[1], path[0], None
    raise ValueError(f"asset key {key.to_user_string()!r} is not [experiment, round_<r>, stage] or [experiment, stage]")


def warehouse_at(root: str) -> Warehouse:
    """The warehouse at `root`, made once per process and root: resolving a root's URL and filesystem costs
    more than reading a small table, and every input, output and shard goes through it (a Warehouse holds no
    state). A relative local root is resolved against the current directory first, as `Warehouse` does."""
    return _warehouse(root if "://" in root else os.path.abspath(os.path.expanduser(root)))


@lru_cache(maxsize=16)
def _warehouse(root: str) -> Warehouse:
    return Warehouse(root)


class ParquetIOManager(dg.ConfigurableIOManager):
    """Writes each asset's pyarrow Table atomically to `<root>/<stage>/experiment=E[/round=r]/data.parquet`."""

    root: str  # local folder or fsspec URL; see `state.warehouse_root()` for the CLI's default

    @property
    def warehouse(self) -> Warehouse:
        return warehouse_at(self.root)

    def handle_output(self, context: dg.OutputContext, obj: pa.Table) -> None:
        if not isinstance(obj, pa.Table):
            raise TypeError(
                f"ParquetIOManager stores pyarrow.Table values; asset {context.asset_key.to_user_string()!r} "
                f"returned {type(obj).__module__}.{type(obj).__qualname__}"
            )
        stage, experiment, round = partition_of(context.asset_key)
        faults.point(f"write:{stage}")
        result = self.warehouse.write(stage, obj, experiment, round)
        context.add_output_metadata({"path": dg.MetadataValue.path(result.path), "dagster/row_count": result.num_rows})

    def load_input(self, context: dg.InputContext) -> pa.Table:
        return self.load(context.asset_key)

    def load(self, key: dg.AssetKey) -> pa.Table:
        """The stored table; of a table with filter variants (`filtered`, `gap`), the latest setting's rows,
        which is what every downstream stage and check reads (all settings stay in the warehouse and SQL)."""
        return current(self.warehouse.read(*partition_of(key)))


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse as a resource, for assets that write shards or read other partitions."""

    root: str  # same root as the io manager's

    def get(self) -> Warehouse:
        return warehouse_at(self.root)
