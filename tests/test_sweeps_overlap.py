"""Threshold sweeps and verifier overlap (pure) against hand-worked values."""

import math

import numpy as np
import pytest

from selfimprove import filters, overlap, sweeps

# Two prompts of 4 samples. Prompt a: correct 1,1,0,0; prompt b: 1,0,0,0. J(f) = (0.5 + 0.25) / 2 = 0.375.
IDS = ["a"] * 4 + ["b"] * 4
OK = [1, 1, 0, 0, 1, 0, 0, 0]
SCORE = [0.9, 0.6, 0.4, 0.1, 0.7, 0.8, 0.2, 0.3]


def _weights(axis, t):
    return filters.threshold_filter(SCORE, t) if axis == "tau" else filters.quantile_filter(IDS, SCORE, t)


def test_sweep_rows_by_hand():
    rows = sweeps.sweep_rows(IDS, OK, _weights, {"tau": [0.5, 0.85, 0.95], "alpha": [0.25, 1.0]}, n_boot=50)
    by = {(r["axis"], r["setting"]): r for r in rows}
    # tau 0.5: a keeps 0.9, 0.6 (both right) -> 1; b keeps 0.7 (right), 0.8 (wrong) -> 0.5; J(f[w]) = 0.75
    assert by[("tau", 0.5)]["j_fw"] == pytest.approx(0.75)
    assert by[("tau", 0.5)]["gap"] == pytest.approx(0.375)
    # tau 0.85: a keeps 0.9 -> 1; b keeps nothing -> its J_x(f) 0.25; J(f[w]) = 0.625, one empty prompt
    assert by[("tau", 0.85)]["gap"] == pytest.approx(0.25)
    assert by[("tau", 0.85)]["empty_prompts"] == 1
    # tau 0.95 keeps nothing: gap 0 exactly
    assert by[("tau", 0.95)]["gap"] == 0.0 and by[("tau", 0.95)]["kept_fraction"] == 0.0
    # alpha 0.25 keeps each prompt's top sample: a 0.9 (right), b 0.8 (wrong): (1 + 0) / 2 - 0.375
    assert by[("alpha", 0.25)]["gap"] == pytest.approx(0.125)
    assert by[("alpha", 0.25)]["strictness"] == pytest.approx(0.75)
    assert by[("alpha", 1.0)]["gap"] == 0.0
    best = sweeps.best_rows([{**r, "verifier": "v"} for r in rows])
    assert {(rows[i]["axis"], rows[i]["setting"]) for i in best} == {("tau", 0.5), ("alpha", 0.25)}


def _curve(gaps, lo_off=0.05, kept=None):
    return [
        {
            "strictness": i / (len(gaps) - 1),
            "setting": i / (len(gaps) - 1),
            "gap": g,
            "gap_lo": g - lo_off,
            "gap_hi": g + lo_off,
            "kept_fraction": 1.0 if kept is None else kept[i],
        }  # fmt: skip
        for i, g in enumerate(gaps)
    ]


def test_shape_rules():
    peak = sweeps.shape(_curve([0.0, 0.1, 0.2, 0.1, 0.02]))
    assert peak.interior_peak and not peak.rising and peak.label == "interior peak"
    assert peak.peak_strictness == 0.5
    rising = sweeps.shape(_curve([0.0, 0.05, 0.1, 0.15, 0.2]))
    assert rising.rising and not rising.interior_peak
    # a peak whose CI reaches an end's gap is not a peak
    assert sweeps.shape(_curve([0.0, 0.1, 0.12, 0.1, 0.09])).label == "neither"
    # settings that keep nothing are left out: the curve ends where it last kept a sample
    cut = sweeps.shape(_curve([0.0, 0.05, 0.1, 0.15, 0.0], kept=[1, 1, 1, 1, 0]))
    assert cut.rising
    with pytest.raises(ValueError, match=">= 3 settings"):
        sweeps.shape(_curve([0.0, 0.1]))


def test_transfer():
    rows = []
    for m, gaps in (("xs", [0.0, 0.1, 0.05]), ("m", [0.0, 0.2, 0.1]), ("l", [0.0, 0.1, 0.3])):
        for r in _curve(gaps, lo_off=0.03):
            rows.append({**r, "member": m})
    out = sweeps.transfer(rows)
    # mean gaps per setting: 0, 0.133, 0.15 -> family setting 1.0; xs loses 0.05 vs its best 0.1 (hi 0.08 < 0.1)
    assert out["family_setting"] == 1.0
    assert out["members"]["xs"]["transfers"] is False and out["members"]["l"]["transfers"] is True
    assert out["holds"] is False
    assert sweeps.transfer(rows[:3])["holds"] is None


def test_pairwise_transfer_by_hand():
    # settings 0, 0.5, 1: task a peaks at 0.5, task b at 1.0; CIs +-0.03
    rows = [{**r, "member": "a"} for r in _curve([0.0, 0.2, 0.1], lo_off=0.03)]
    rows += [{**r, "member": "b"} for r in _curve([0.0, 0.17, 0.19], lo_off=0.03)]
    pairs = {(p["source"], p["target"]): p for p in sweeps.pairwise_transfer(rows)}
    assert set(pairs) == {("a", "b"), ("b", "a")}
    # a's best (0.5) on b: 0.17, CI to 0.20 >= b's best 0.19 -> transfers
    ab = pairs[("a", "b")]
    assert ab["source_best"] == 0.5 and ab["target_best"] == 1.0 and ab["gap_at_source_best"] == 0.17
    assert ab["transfers"] is True
    # b's best (1.0) on a: 0.1, CI to 0.13 < a's best 0.2 -> does not
    ba = pairs[("b", "a")]
    assert ba["gap_at_source_best"] == 0.1 and ba["gap_at_source_best_hi"] == pytest.approx(0.13)
    assert ba["transfers"] is False
    assert sweeps.pairwise_transfer(rows[:3]) == []


def test_pair_rows_and_kappa():
    a = [1.0, 0.8, 0.2, 0.1]
    b = [0.9, 0.1, 0.7, 0.2]
    rows = overlap.pair_rows({"a": a, "b": b}, {"a": [1, 1, 0, 0], "b": [1, 0, 1, 0]})
    (r,) = rows
    # agreement: samples 0 (both keep) and 3 (both drop) -> 1/2; p_e = .5*.5 + .5*.5 = .5 -> kappa 0
    assert r["agreement"] == 0.5 and r["kappa"] == pytest.approx(0.0)
    assert r["jaccard"] == pytest.approx(1 / 3)
    assert r["pearson"] == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert overlap.cohen_kappa([1, 0, 1, 0], [1, 0, 1, 0]) == pytest.approx(1.0)
    assert math.isnan(overlap.cohen_kappa([1, 1], [1, 1]))


def test_calibration_rows():
    s = [0.05, 0.05, 0.95, 0.95, np.nan]
    y = [0, 1, 1, 1, 0]
    (row,) = overlap.calibration_rows({"v": s}, y)
    # bins: [0, .1) holds 0.05 x2 (acc .5) -> |1 - .1|; [.9, 1] holds .95 x2 (acc 1) -> |2 - 1.9|; ECE = (.9 + .1)/4
    assert row["ece"] == pytest.approx(0.25)
    assert row["n_scored"] == 4
    assert row["brier"] == pytest.approx((0.05**2 + 0.95**2 + 0.05**2 * 2) / 4)
    bins = row["reliability"]
    assert bins[0]["n"] == 2 and bins[0]["accuracy"] == 0.5 and bins[9]["accuracy"] == 1.0
    assert sum(b["n"] for b in bins) == 4
