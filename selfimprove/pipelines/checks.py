"""Asset checks of a round: a positive gap, parseable verifier output, a non-empty filter, no eval drop."""

import dagster as dg
import pyarrow as pa

from selfimprove.assets.common import Experiment
from selfimprove.assets.evals import accuracy
from selfimprove.assets.gaps import headline


def round_checks(exp: Experiment, r: int) -> list[dg.AssetChecksDefinition]:
    gap_cfg = exp.spec.gap
    blocking = gap_cfg.block_distill_if_gap_le_zero

    @dg.asset_check(
        asset=exp.key("gap", r),
        name="gap_positive",
        blocking=blocking,
        description="The configured verifier and filter give a gap > 0; blocking stops this round's distillation.",
    )
    def gap_positive(gap: pa.Table) -> dg.AssetCheckResult:
        h = headline(gap)
        return dg.AssetCheckResult(
            passed=bool(h["gap"] > 0),
            severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
            metadata={"gap": h["gap"], "gap_lo": h["gap_lo"], "gap_hi": h["gap_hi"]},
        )

    @dg.asset_check(
        asset=exp.key("gap", r),
        name="parse_failure_rate",
        blocking=True,
        description="Unparseable verifier output stays below the spec's limit (gap.max_parse_failure_rate); "
        "above it, this round's distillation is stopped: the scores would be the fallback, not the verifier's.",
    )
    def parse_failure(gap: pa.Table) -> dg.AssetCheckResult:
        rates = {
            r["verifier"]: r["parse_failure_rate"]
            for r in gap.to_pylist()
            if r["parse_failure_rate"] == r["parse_failure_rate"]
        }
        worst = max(rates, key=lambda v: rates[v]) if rates else ""
        rate, limit = rates.get(worst, 0.0), gap_cfg.max_parse_failure_rate
        passed = rate <= limit
        why = (
            f"round {r}: {rate:.0%} of {worst} verifier outputs are unparseable (limit {limit:.0%}); distillation "
            "stopped. Check verification.style and templates, or raise gap.max_parse_failure_rate."
        )
        return dg.AssetCheckResult(
            passed=bool(passed),
            severity=dg.AssetCheckSeverity.ERROR,
            description=None if passed else why,
            metadata={"parse_failure_rate": rate, "limit": limit, "verifier": worst},
        )

    @dg.asset_check(
        asset=exp.key("filtered", r),
        name="not_empty",
        blocking=True,
        description="The filter kept at least one sample.",
    )
    def not_empty(filtered: pa.Table) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=filtered.num_rows > 0, metadata={"rows": filtered.num_rows})

    @dg.asset_check(
        asset=exp.key("eval", r + 1),
        name="heldout_not_worse",
        additional_ins={"previous": dg.AssetIn(exp.key("eval", r))},
        description=f"Held-out greedy accuracy after round {r}'s distillation did not fall below its level before.",
    )
    def heldout_not_worse(eval_: pa.Table, previous: pa.Table) -> dg.AssetCheckResult:
        now, before = accuracy(eval_, "greedy") or 0.0, accuracy(previous, "greedy") or 0.0
        return dg.AssetCheckResult(
            passed=now >= before, severity=dg.AssetCheckSeverity.WARN, metadata={"now": now, "before": before}
        )

    return [gap_positive, parse_failure, not_empty, heldout_not_worse]
