"""Asset checks of the sampling stages: complete generations, one verification per sample and method,
and a held-out accuracy that did not fall by more than its bootstrap CI allows."""

from __future__ import annotations

from collections import Counter

import dagster as dg
import pyarrow as pa

from selfimprove.assets.common import Experiment
from selfimprove.verdicts import paired_change


def generation_problems(generations: pa.Table, n: int) -> list[str]:
    """What is wrong with a generations table: prompts without n samples, repeated sample ids, missing seeds."""
    problems = []
    counts = Counter(generations.column("prompt_id").to_pylist())
    short = sorted(p for p, c in counts.items() if c != n)
    if short:
        problems.append(f"{len(short)} prompt(s) without {n} samples, e.g. {short[0]!r} has {counts[short[0]]}")
    ids = generations.column("sample_id").to_pylist()
    if len(set(ids)) != len(ids):
        problems.append(f"{len(ids) - len(set(ids))} repeated sample_id(s)")
    if generations.column("seed").null_count:
        problems.append(f"{generations.column('seed').null_count} row(s) without a seed")
    if not generations.num_rows:
        problems.append("no samples")
    return problems


def verification_problems(generations: pa.Table, verifications: pa.Table, methods: list[str]) -> list[str]:
    """Samples not verified exactly once by each configured method (tournament rows may repeat a sample)."""
    problems = []
    ids = set(generations.column("sample_id").to_pylist())
    rows = verifications.select(["sample_id", "method"]).to_pylist()
    for m in methods:
        seen = {r["sample_id"] for r in rows if r["method"] == m}
        if missing := ids - seen:
            problems.append(f"{m}: {len(missing)} of {len(ids)} samples unverified, e.g. {sorted(missing)[0]!r}")
        if extra := seen - ids:
            problems.append(f"{m}: {len(extra)} verified sample(s) not in generations, e.g. {sorted(extra)[0]!r}")
    return problems


def greedy_change(now: pa.Table, before: pa.Table, n_boot: int, seed: int) -> tuple[float, float, float]:
    """Held-out greedy accuracy now - before over the prompts in both, with a paired prompt-bootstrap 95% CI."""

    def per_prompt(t: pa.Table) -> dict[str, float]:
        rows = t.select(["prompt_id", "mode", "correct"]).to_pylist()
        return {r["prompt_id"]: float(r["correct"]) for r in rows if r["mode"] == "greedy"}

    return paired_change(per_prompt(now), per_prompt(before), n_boot, seed)


def stage_checks(exp: Experiment, r: int) -> list[dg.AssetChecksDefinition]:
    spec = exp.spec
    n = spec.generation.n

    @dg.asset_check(
        asset=exp.key("generations", r),
        name="samples_complete",
        blocking=True,
        description=f"Every prompt has its {n} samples, each with a unique sample_id and a seed; blocking: "
        "verification, the gap and distillation do not run on an incomplete round.",
    )
    def samples_complete(generations: pa.Table) -> dg.AssetCheckResult:
        problems = generation_problems(generations, n)
        return dg.AssetCheckResult(
            passed=not problems,
            description="; ".join(problems) or None,
            metadata={"rows": generations.num_rows, "prompts": len(set(generations.column("prompt_id").to_pylist()))},
        )

    @dg.asset_check(
        asset=exp.key("verifications", r),
        name="every_sample_verified",
        blocking=True,
        additional_ins={"generations": dg.AssetIn(exp.key("generations", r))},
        description=f"Each of {', '.join(spec.verification.methods)} verified every sample of the round; blocking: "
        "the filter and the gap would otherwise score missing samples as parse failures.",
    )
    def every_sample_verified(verifications: pa.Table, generations: pa.Table) -> dg.AssetCheckResult:
        problems = verification_problems(generations, verifications, spec.verification.methods)
        return dg.AssetCheckResult(
            passed=not problems, description="; ".join(problems) or None, metadata={"rows": verifications.num_rows}
        )

    @dg.asset_check(
        asset=exp.key("eval", r + 1),
        name="heldout_not_worse",
        additional_ins={"previous": dg.AssetIn(exp.key("eval", r))},
        description=f"Held-out greedy accuracy after round {r}'s distillation is not significantly below its level "
        "before: fails (a warning) only when the paired prompt-bootstrap 95% CI of the change lies below 0.",
    )
    def heldout_not_worse(eval_: pa.Table, previous: pa.Table) -> dg.AssetCheckResult:
        change, lo, hi = greedy_change(eval_, previous, spec.gap.bootstrap, spec.seed)
        return dg.AssetCheckResult(
            passed=not hi < 0,  # NaN (no common prompts) passes: nothing to compare
            severity=dg.AssetCheckSeverity.WARN,
            description=f"change {change:+.3f} [95% CI {lo:+.3f}, {hi:+.3f}]",
            metadata={"change": round(change, 4), "change_lo": round(lo, 4), "change_hi": round(hi, 4)},
        )

    return [samples_complete, every_sample_verified, heldout_not_worse]
