"""Asset checks of a round: a positive gap, parseable verifier output, a non-empty filter, plus the
sampling stages' checks (pipelines/stage_checks.py)."""

import dagster as dg
import pyarrow as pa

from selfimprove.assets.common import Experiment
from selfimprove.assets.gaps import headline
from selfimprove.pipelines.stage_checks import stage_checks


def round_checks(exp: Experiment, r: int) -> list[dg.AssetChecksDefinition]:
    gap_cfg = exp.spec.gap
    blocking = gap_cfg.block_distill_if_gap_le_zero

    @dg.asset_check(
        asset=exp.key("gap", r),
        name="gap_positive",
        blocking=blocking,
        description="The main verifier with the filter used does not give a gap <= 0: fails when the gap's "
        "prompt-bootstrap 95% CI lies at or below 0"
        + (
            "; blocking (gap.block_distill_if_gap_le_zero): a failure stops this round's distillation."
            if blocking
            else "; a warning only: set gap.block_distill_if_gap_le_zero to stop distillation when it fails."
        ),
    )
    def gap_positive(gap: pa.Table) -> dg.AssetCheckResult:
        h = headline(gap)
        return dg.AssetCheckResult(
            passed=not h["gap_hi"] <= 0,  # a CI straddling 0 is not evidence of a non-positive gap
            severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
            description=f"gap {h['gap']:+.3f} [95% CI {h['gap_lo']:+.3f}, {h['gap_hi']:+.3f}]",
            metadata={k: round(h[k], 4) for k in ("gap", "gap_lo", "gap_hi")},
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

    return [gap_positive, parse_failure, not_empty, *stage_checks(exp, r)]
