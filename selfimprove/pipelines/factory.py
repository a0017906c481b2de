"""The round factory: one experiment spec -> its assets, checks and job. A stage's checks of its own table
are part of its asset (assets/checked.py); the cross-round `heldout_not_worse` is a check of its own.

Rounds are key prefixes, not partitions: round r's generations depend on round r-1's checkpoint, and
that lineage is visible in the UI. Each round is a group nested in its experiment's (`demo/round_1`).
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from selfimprove.assets.analyses import threshold_sweep_asset, verifier_overlap_asset
from selfimprove.assets.checkpoints import checkpoint_asset
from selfimprove.assets.common import Experiment
from selfimprove.assets.evals import eval_asset, heldout_check
from selfimprove.assets.filtered import filtered_asset
from selfimprove.assets.gaps import gap_asset
from selfimprove.assets.generations import generations_asset
from selfimprove.assets.models import base_model_asset
from selfimprove.assets.pairs import pairs_asset
from selfimprove.assets.prompts import prompts_asset
from selfimprove.assets.reports import report_asset
from selfimprove.assets.verifications import verifications_asset
from selfimprove.resources.updates import UPDATES
from selfimprove.spec import ExperimentSpec

ROUND_STAGES = (generations_asset, verifications_asset, gap_asset, filtered_asset, checkpoint_asset, eval_asset)
# Analyses of a round's samples and verifications (paper §6), beside the loop: nothing downstream reads them.
ROUND_ANALYSES = (threshold_sweep_asset, verifier_overlap_asset)


@dataclass(frozen=True)
class ExperimentDefs:
    assets: list[dg.AssetsDefinition]
    checks: list[dg.AssetChecksDefinition]
    job: dg.UnresolvedAssetJobDefinition


def build_experiment(spec: ExperimentSpec) -> ExperimentDefs:
    exp = Experiment(spec)
    assets = [base_model_asset(exp), prompts_asset(exp)]
    checks: list[dg.AssetChecksDefinition] = []
    for r in range(spec.rounds):
        assets += [stage(exp, r) for stage in (*ROUND_STAGES, *ROUND_ANALYSES)]
        if UPDATES[spec.distill.update].data == "pairs":  # preference updates train on the round's pairs
            assets.append(pairs_asset(exp, r))
        checks.append(heldout_check(exp, r))
    assets += [eval_asset(exp, spec.rounds), report_asset(exp)]
    job = dg.define_asset_job(
        f"{spec.name}_job",
        selection=dg.AssetSelection.assets(*assets),
        description=spec.description or f"Every round of experiment {spec.name}.",
        executor_def=dg.in_process_executor,
    )
    return ExperimentDefs(assets, checks, job)
