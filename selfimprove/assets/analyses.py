"""Per-round analyses of the paper's §6 over one round's samples and verifications, no model needed:

- `threshold_sweep`: the gap against the filter's threshold (global tau and per-prompt quantile) for every
  verifier, the ensemble, the oracle and the majority vote (scored by vote share), with CIs, each curve's
  best setting and its shape (`sweeps.shape`);
- `verifier_overlap`: for every pair of verifiers (the majority vote included), score correlations and
  agreement on the samples their configured filters keep;
- `calibration`: per verifier, ECE, Brier score and the reliability table.

Each asset writes its figure under `<warehouse>/_artifacts/plots/experiment=E/` and lists it in `plot`.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa

from selfimprove import overlap, sweeps
from selfimprove.assets import plots
from selfimprove.assets.common import Experiment, output
from selfimprove.assets.gaps import candidates
from selfimprove.assets.scoring import MAJORITY, answer_classes, combined, method_scores
from selfimprove.resources.io_manager import WarehouseResource
from selfimprove.spec import ExperimentSpec

CODE_VERSION = "1"


def _scores(spec: ExperimentSpec, generations: pa.Table, verifications: pa.Table, classes: np.ndarray) -> dict:
    ids = generations.column("prompt_id").to_pylist()
    scores = method_scores(generations, verifications, spec.verification.methods, spec.verification.on_parse_failure)
    scores.setdefault("oracle", np.asarray(generations.column("correct").to_pylist(), dtype=float))
    majority = spec.filter.model_copy(update={"kind": "majority"})
    scores[MAJORITY] = combined(ids, {}, majority, classes)[0]
    return scores


def sweep_table(spec: ExperimentSpec, generations: pa.Table, verifications: pa.Table, classes: np.ndarray) -> pa.Table:
    """Rows of `sweeps.sweep_rows` per verifier (`candidates` and the majority vote), with `best` and `shape`."""
    ids = generations.column("prompt_id").to_pylist()
    correct = np.asarray(generations.column("correct").to_pylist(), dtype=float)
    scores = _scores(spec, generations, verifications, classes)
    rows: list[dict[str, Any]] = []
    for name, members in [*candidates(spec), (MAJORITY, [MAJORITY])]:
        sub = {m: scores[m] for m in members}

        def weights(axis: str, t: float, sub: dict = sub) -> np.ndarray:
            f = spec.filter.model_copy(update={"kind": "threshold" if axis == "tau" else "quantile", axis: t})
            return combined(ids, sub, f)[1]

        curve = sweeps.sweep_rows(ids, correct, weights, n_boot=spec.gap.bootstrap, seed=spec.seed)
        for axis in ("tau", "alpha"):
            label = sweeps.shape([r for r in curve if r["axis"] == axis]).label
            for r in curve:
                if r["axis"] == axis:
                    r["shape"] = label
        rows += [{"verifier": name, **r} for r in curve]
    best = sweeps.best_rows(rows)
    for i, r in enumerate(rows):
        r["best"] = i in best
    return pa.Table.from_pylist(rows)


def _kept(spec: ExperimentSpec, ids: list[str], scores: dict, classes: np.ndarray, name: str) -> np.ndarray:
    f = spec.filter.model_copy(update={"kind": "majority"}) if name == MAJORITY else spec.filter
    return combined(ids, {name: scores[name]}, f, classes)[1]


def overlap_tables(
    spec: ExperimentSpec, generations: pa.Table, verifications: pa.Table, classes: np.ndarray
) -> tuple[pa.Table, pa.Table]:
    """(verifier_overlap, calibration) over the configured methods and the majority vote (oracle left out)."""
    ids = generations.column("prompt_id").to_pylist()
    correct = np.asarray(generations.column("correct").to_pylist(), dtype=float)
    scores = _scores(spec, generations, verifications, classes)
    names = [m for m in spec.verification.methods if m != "oracle"] + [MAJORITY]
    sub = {n: scores[n] for n in names}
    kept = {n: _kept(spec, ids, scores, classes, n) for n in names}
    pairs = pa.Table.from_pylist(overlap.pair_rows(sub, kept))
    return pairs, pa.Table.from_pylist(overlap.calibration_rows(sub, correct))


def _write_plot(warehouse: WarehouseResource, exp: Experiment, figure: str, png: bytes) -> tuple[str, str]:
    rel = plots.artifact_path("experiment", exp.name, figure)
    return rel, warehouse.get().write_bytes(rel, png)


def _with_plot(out: dg.Output, table_plot: tuple[str, str], png: bytes, alt: str) -> dg.Output:
    out.metadata["plot"] = dg.MetadataValue.md(plots.md_image(png, alt))
    out.metadata["plot_path"] = dg.MetadataValue.path(table_plot[1])
    return out


def _best_markdown(table: pa.Table) -> str:
    lines = ["| verifier | axis | best setting | gap [95% CI] | kept | shape |", "|---|---|---:|---|---:|---|"]
    for r in table.to_pylist():
        if r["best"]:
            lines.append(
                f"| {r['verifier']} | {r['axis']} | {r['setting']:g} | {r['gap']:+.3f} "
                f"[{r['gap_lo']:+.3f}, {r['gap_hi']:+.3f}] | {r['kept_fraction']:.2f} | {r['shape']} |"
            )
    return "\n".join(lines)


def _ins(exp: Experiment, r: int) -> dict[str, dg.AssetIn]:
    return {
        "generations": dg.AssetIn(exp.key("generations", r)),
        "verifications": dg.AssetIn(exp.key("verifications", r)),
    }


def threshold_sweep_asset(exp: Experiment, r: int) -> dg.AssetsDefinition:
    @dg.asset(
        key=exp.key("threshold_sweep", r),
        ins=_ins(exp, r),
        group_name=exp.group(r),
        kinds={"parquet"},
        code_version=CODE_VERSION,
        description=(
            f"Round {r}: gap and relative gap (CIs) against the filter threshold, global tau and per-prompt "
            "quantile, for every verifier, the ensemble, the oracle and the majority vote; best settings, shapes."
        ),
    )
    def threshold_sweep(
        warehouse: WarehouseResource, generations: pa.Table, verifications: pa.Table
    ) -> dg.Output[pa.Table]:
        table = sweep_table(exp.spec, generations, verifications, answer_classes(exp.task, generations))
        png = plots.sweep_figure(table.to_pylist(), f"{exp.name} round {r}: gap against the filter threshold")
        where = _write_plot(warehouse, exp, f"round_{r}_threshold_sweep", png)
        table = table.append_column("plot", pa.array([where[0]] * table.num_rows, pa.string()))
        out = output(table, None, ["verifier", "axis", "setting", "gap", "kept_fraction", "best", "shape"])
        out.metadata["best"] = dg.MetadataValue.md(_best_markdown(table))
        return _with_plot(out, where, png, "threshold sweep")

    return threshold_sweep


def verifier_overlap_asset(exp: Experiment, r: int) -> dg.AssetsDefinition:
    @dg.multi_asset(
        outs={
            "verifier_overlap": dg.AssetOut(
                key=exp.key("verifier_overlap", r),
                kinds={"parquet"},
                code_version=CODE_VERSION,
                description=f"Round {r}: per pair of verifiers (majority vote included), score correlations and "
                "agreement (fraction, Cohen's kappa, Jaccard) on the samples their configured filters keep.",
            ),
            "calibration": dg.AssetOut(
                key=exp.key("calibration", r),
                kinds={"parquet"},
                code_version=CODE_VERSION,
                description=f"Round {r}: per verifier, ECE, Brier score and the reliability table of its score.",
            ),
        },
        ins=_ins(exp, r),
        group_name=exp.group(r),
        name=f"{exp.name}_round_{r}_verifier_overlap",
    )
    def verifier_overlap(warehouse: WarehouseResource, generations: pa.Table, verifications: pa.Table):  # noqa: ANN202
        classes = answer_classes(exp.task, generations)
        pairs, calib = overlap_tables(exp.spec, generations, verifications, classes)
        names = list(calib.column("verifier").to_pylist())
        matrices = {}
        for stat in ("pearson", "kappa"):
            m = np.eye(len(names))
            for p in pairs.to_pylist():
                i, j = names.index(p["verifier_a"]), names.index(p["verifier_b"])
                m[i, j] = m[j, i] = np.nan if p[stat] is None else p[stat]
            matrices[stat] = m
        png_o = plots.overlap_figure(names, matrices, f"{exp.name} round {r}: verifier overlap")
        calib_rows = calib.to_pylist()
        png_c = plots.reliability_figure(
            {c["verifier"]: c["reliability"] for c in calib_rows},
            {c["verifier"]: c["ece"] for c in calib_rows},
            f"{exp.name} round {r}: calibration",
        )
        where_o = _write_plot(warehouse, exp, f"round_{r}_verifier_overlap", png_o)
        where_c = _write_plot(warehouse, exp, f"round_{r}_calibration", png_c)
        pairs = pairs.append_column("plot", pa.array([where_o[0]] * pairs.num_rows, pa.string()))
        calib = calib.append_column("plot", pa.array([where_c[0]] * calib.num_rows, pa.string()))
        o = output(pairs, None, ["verifier_a", "verifier_b", "pearson", "kappa"], "verifier_overlap")
        c = output(calib, None, ["verifier", "ece", "brier"], "calibration")
        return _with_plot(o, where_o, png_o, "overlap"), _with_plot(c, where_c, png_c, "calibration")

    return verifier_overlap
