"""Stage assets whose checks run in the stage's own step.

A check of a stage's table (`samples_complete` on generations, `not_empty` on filtered, ...) is declared with
the asset (`check_specs`) and evaluated right after the table is stored, in the same step: a round is one
step per stage, not one per stage and check (5 steps instead of 10; docs/benchmarks.md, "Row cache,
resumption, SQL at scale"). The asset can be subset, so a check can still be run alone (the UI's
"Execute" on a check, or an asset-check selection): it then reads the stored table and recomputes nothing.
Either way a check sees the table as every reader does: the current filter setting's rows
(`variants.current`, which `ParquetIOManager.load` applies to the stored table).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pyarrow as pa

from selfimprove.variants import current


@dataclass(frozen=True)
class TableCheck:
    """A check of one stage's table. `evaluate(table, inputs)` gets the stored table and the step's inputs by
    name (e.g. `generations` for a check of verifications)."""

    name: str
    description: str
    evaluate: Callable[[pa.Table, Mapping[str, Any]], dg.AssetCheckResult]
    blocking: bool = True


def stage_asset(
    *, key: dg.AssetKey, checks: Sequence[TableCheck], **asset: Any
) -> Callable[[Callable[..., dg.Output[pa.Table]]], dg.AssetsDefinition]:
    """`@dg.asset(key=key, **asset)` with `checks` evaluated in its step. The decorated function returns the
    stage's `Output`; its parameters (inputs, resources, config) are declared as for `@dg.asset`."""
    ins = asset.pop("ins", {})
    pool = asset.pop("pool", None)
    specs = [dg.AssetCheckSpec(c.name, asset=key, description=c.description, blocking=c.blocking) for c in checks]

    def decorate(fn: Callable[..., dg.Output[pa.Table]]) -> dg.AssetsDefinition:
        @functools.wraps(fn)
        def step(*args: Any, **kwargs: Any) -> Iterator[dg.Output[pa.Table] | dg.AssetCheckResult]:
            context = dg.AssetExecutionContext.get()
            if key in context.selected_asset_keys:
                out = fn(*args, **kwargs)
                yield out  # stored by the IO manager before the generator resumes
                table = current(out.value)  # what the IO manager hands every reader
            else:  # the check alone: the stored table, as every reader loads it
                table = context.resources.io_manager.load(key)
            for c in checks:
                if dg.AssetCheckKey(key, c.name) in context.selected_asset_check_keys:
                    yield c.evaluate(table, kwargs)._replace(asset_key=key, check_name=c.name)

        # Dagster reads the parameters off this signature; the generator returns no Output annotation
        step.__signature__ = inspect.signature(fn, eval_str=True).replace(return_annotation=inspect.Signature.empty)  # type: ignore[attr-defined]
        return dg.multi_asset(
            name=key.to_python_identifier(),
            outs={"result": dg.AssetOut(key=key, **asset)},
            ins=ins,
            check_specs=specs,
            can_subset=True,
            pool=pool,
        )(step)

    return decorate
