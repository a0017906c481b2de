"""The report asset on hand-made round tables (no model): exact pass@k, diversity and changes, real PNG
figures in the warehouse and in the metadata; and the verdicts on hand cases."""

from __future__ import annotations

import base64
import io
import math
import re
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path

import dagster as dg
import matplotlib.image
import pyarrow as pa
import pytest

from selfimprove.assets import plots
from selfimprove.assets.gaps import gap_rows
from selfimprove.assets.reports import FIGURES, markdown, per_prompt_pass_at, report_rows
from selfimprove.definitions import build_definitions
from selfimprove.resources.warehouse import Warehouse
from selfimprove.verdicts import diversity_verdict, gap_verdict, verdicts
from tests.conftest import micro_spec

# Round 0: 3 prompts x 4 samples with 1, 2 and 0 correct; round 1 collapses onto one answer per prompt.
CORRECT = {
    0: {"p0": [1, 0, 0, 0], "p1": [1, 1, 0, 0], "p2": [0, 0, 0, 0]},
    1: {"p0": [1, 1, 1, 1], "p1": [0, 0, 0, 0], "p2": [0, 0, 0, 0]},
}
ANSWERS = {
    0: {"p0": ["7", "8", "9", None], "p1": ["5", "5", "6", "7"], "p2": ["1", "2", "2", "2"]},
    1: {"p0": ["7", "7", "7", "7"], "p1": ["6", "6", "6", "6"], "p2": ["2", "2", None, None]},
}
SPEC = micro_spec(gap={"bootstrap": 200})


def generations(r: int) -> pa.Table:
    rows = [
        {"sample_id": f"micro/r{r}/{p}/{i}", "prompt_id": p, "sample_index": i, "answer": a, "correct": bool(c)}
        for p in CORRECT[r]
        for i, (c, a) in enumerate(zip(CORRECT[r][p], ANSWERS[r][p], strict=True))
    ]
    return pa.Table.from_pylist(rows)


def verifications(r: int) -> pa.Table:
    """MC scores: high on the correct samples except one, NaN (unparsed) on the last sample of p2."""
    gens = generations(r).to_pylist()
    rows = []
    for j, g in enumerate(gens):
        score = (0.8 if g["correct"] else 0.3) + 0.01 * j
        ok = not (g["prompt_id"] == "p2" and g["sample_index"] == 3)
        rows.append({"sample_id": g["sample_id"], "method": "mc", "ok": ok, "score": score if ok else math.nan})
    return pa.Table.from_pylist(rows)


def evals(r: int) -> pa.Table:
    greedy = [[True, False, False, False], [True, True, False, False], [True, True, True, False]][r]
    sampled = [True, False] * 4
    rows = [{"prompt_id": f"e{i}", "mode": "greedy", "correct": c} for i, c in enumerate(greedy)]
    rows += [{"prompt_id": f"e{i // 2}", "mode": "sampled", "correct": c} for i, c in enumerate(sampled)]
    return pa.Table.from_pylist(rows)


def gap(r: int) -> pa.Table:
    return gap_rows(SPEC, generations(r), verifications(r))


@pytest.fixture(scope="module")
def materialized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Warehouse, dg.AssetMaterialization]:
    root = tmp_path_factory.mktemp("report_wh")
    wh = Warehouse(str(root))
    for r in (0, 1):
        wh.write("generations", generations(r), "micro", r)
        wh.write("verifications", verifications(r), "micro", r)
        wh.write("gap", gap(r), "micro", r)
    for r in (0, 1, 2):
        wh.write("eval", evals(r), "micro", r)
    defs = build_definitions([SPEC], root=str(root))
    key = dg.AssetKey(["micro", "report"])
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={key})
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    (event,) = result.get_asset_materialization_events()
    return wh, event.materialization


def test_per_prompt_pass_at_k_exact() -> None:
    g = generations(0)
    ids, correct = g.column("prompt_id").to_pylist(), g.column("correct").to_pylist()
    assert per_prompt_pass_at(ids, correct, 1) == {"p0": 0.25, "p1": 0.5, "p2": 0.0}
    two = per_prompt_pass_at(ids, correct, 2)  # 1 - C(n-c, 2) / C(4, 2)
    assert two["p0"] == pytest.approx(1 - 3 / 6) and two["p1"] == pytest.approx(1 - 1 / 6) and two["p2"] == 0.0


def test_report_rows_exact_values() -> None:
    table = report_rows(2, [gap(0), gap(1)], [evals(r) for r in range(3)], [generations(0), generations(1)], n_boot=200)
    rows = table.to_pylist()
    assert [r["round"] for r in rows] == [0, 1, 2]
    r0, r1, r2 = rows
    assert r0["pass_at_1"] == pytest.approx(0.25)
    assert r0["pass_at_2"] == pytest.approx((0.5 + 5 / 6 + 0) / 3)
    assert r0["pass_at_4"] == pytest.approx(2 / 3) and r0["pass_at_n"] == r0["pass_at_4"]
    assert r1["pass_at_1"] == r1["pass_at_2"] == r1["pass_at_4"] == pytest.approx(1 / 3)
    assert r0["distinct_answers"] == pytest.approx((3 + 3 + 2) / 3)  # nulls are not answers
    assert r1["distinct_answers"] == pytest.approx(1.0)
    assert r1["pass_at_n_change"] == pytest.approx(1 / 3 - 2 / 3)
    assert r0["spread"] == pytest.approx((0.75 + 0.5 + 0.0) / 3)
    assert r1["spread_change"] == pytest.approx(0.0 - (0.75 + 0.5) / 3)
    assert r0["pass_at_n_change"] is None  # round 0 is the reference
    assert r0["pass_at_n_lo"] <= r0["pass_at_n"] <= r0["pass_at_n_hi"]
    assert r1["pass_at_n_change_lo"] <= r1["pass_at_n_change"] <= r1["pass_at_n_change_hi"] <= 0.0
    configured = next(g for g in gap(0).to_pylist() if g["configured"])
    assert (r0["gap"], r0["gap_lo"], r0["relative_gap_hi"]) == (
        configured["gap"],
        configured["gap_lo"],
        configured["relative_gap_hi"],
    )
    assert (r0["eval_greedy"], r1["eval_greedy"], r2["eval_greedy"]) == (0.25, 0.5, 0.75)
    assert r2["eval_sampled"] == 0.5 and r2["gap"] is None and r2["pass_at_1"] is None
    text = markdown(table)
    assert "pass_at_2" in text and "pass_at_n_lo" not in text  # detail columns left out by default


def test_report_asset_table_and_plots_in_warehouse(materialized: tuple) -> None:
    wh, _ = materialized
    report = wh.read("report", "micro")
    assert report.column("round").to_pylist() == [0, 1, 2]
    assert report.column("pass_at_4").to_pylist()[:2] == pytest.approx([2 / 3, 1 / 3])
    paths = report.column("plots").to_pylist()[0]
    assert paths == [f"_artifacts/plots/experiment=micro/{f}.png" for f in FIGURES]
    assert all(p == paths for p in report.column("plots").to_pylist())
    for rel in paths:
        file = Path(wh.url(rel))
        data = file.read_bytes()
        assert data.startswith(plots.PNG_MAGIC)
        image = matplotlib.image.imread(file)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert "_artifacts" not in wh.stages() and "report" in wh.stages()
    assert not list(Path(wh.url("_staging")).rglob("*.png"))  # temp files moved into place


def test_report_metadata_embeds_the_plots_and_verdicts(materialized: tuple) -> None:
    wh, mat = materialized
    meta = mat.metadata
    for f in FIGURES:
        md = meta[f"plot_{f}"].value
        m = re.fullmatch(rf"!\[{f}\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", md)
        assert m, md[:80]
        png = base64.b64decode(m.group(1))
        assert png == Path(wh.url(f"_artifacts/plots/experiment=micro/{f}.png")).read_bytes()
        assert matplotlib.image.imread(io.BytesIO(png)).shape[2] in (3, 4)
        assert meta[f"plot_path_{f}"].value == wh.url(f"_artifacts/plots/experiment=micro/{f}.png")
    assert {"verdict_gap_shrinks", "verdict_pass_at_n_falls", "verdicts", "per_round"} <= set(meta)
    assert meta["verdict_pass_at_n_falls"].value in ("holds", "does not hold", "undecided")
    chart = meta["heldout_and_gap_by_round"].value  # small enough for the UI to show it without a click
    assert len(chart) < plots.MD_INLINE_LIMIT and "held-out" in urllib.parse.unquote(chart)


def chart_svg(md: str) -> ET.Element:
    m = re.fullmatch(r"!\[chart\]\(data:image/svg\+xml,([^ ()]+)\)", md)
    assert m, md[:80]
    return ET.fromstring(urllib.parse.unquote(m.group(1)))


def test_md_chart_is_an_inline_svg_under_the_ui_limit() -> None:
    svg = chart_svg(plots.md_chart({"held-out": [0.4, 0.5, None, 0.45], "gap": [0.2, 0.1, 0.05]}))
    ns = "{http://www.w3.org/2000/svg}"
    lines = svg.findall(f"{ns}polyline")
    assert [t.text for t in svg.findall(f"{ns}text")] == ["0.5", "0.05", "held-out", "gap"]  # range, then names
    held = [float(v) for v in lines[0].get("points").split(",")]
    assert len(held) == 6  # the None is skipped
    ys = held[1::2]
    assert ys[1] == min(ys) == 6  # the highest value at the top (SVG y grows downwards)
    gap_ys = [float(v) for v in lines[1].get("points").split(",")][1::2]
    assert gap_ys[-1] == 84  # the lowest value at the bottom
    for n, k in ((500, 1), (12, 3), (300, 4), (2000, 4)):  # long series are thinned until they fit
        md = plots.md_chart({f"s{i}": [math.sin(x / 7 + i) for x in range(n)] for i in range(k)})
        assert len(md) < plots.MD_INLINE_LIMIT, (n, k)
        chart_svg(md)


# --------------------------------------------------------------------------- verdicts: hand cases


def rounds(*gaps: tuple[float, float, float]) -> list[dict]:
    return [{"round": r, "gap": g, "gap_lo": lo, "gap_hi": hi} for r, (g, lo, hi) in enumerate(gaps)] + [
        {"round": len(gaps), "gap": None}
    ]


def test_gap_verdict_hand_cases() -> None:
    assert gap_verdict(rounds((0.2, 0.1, 0.3), (0.08, 0.03, 0.12), (0.01, -0.02, 0.04))).holds is True
    shrunk = gap_verdict(rounds((0.2, 0.15, 0.25), (0.1, 0.06, 0.14)))  # CI above 0 but below round 0's gap
    assert shrunk.holds is True and "below the round-0 gap" in shrunk.evidence
    stays = gap_verdict(rounds((0.2, 0.1, 0.3), (0.19, 0.1, 0.28), (0.18, 0.09, 0.26)))
    assert stays.holds is False
    assert gap_verdict(rounds((0.02, -0.01, 0.05), (0.0, -0.02, 0.02))).holds is None  # no round-0 gap
    assert gap_verdict(rounds((0.2, 0.1, 0.3))).holds is None  # one round
    # only rounds 1..3 count: a gap that closes at round 4 is too late
    late = rounds((0.2, 0.1, 0.3), (0.19, 0.1, 0.28), (0.19, 0.1, 0.28), (0.19, 0.1, 0.28), (0.0, -0.1, 0.1))
    assert gap_verdict(late).holds is False
    assert "first met at round 1" in gap_verdict(rounds((0.2, 0.1, 0.3), (0.0, -0.1, 0.1), (0.0, -0.1, 0.1))).evidence


def diversity(change: tuple[float, float, float], spread: tuple[float, float, float]) -> list[dict]:
    first = {"round": 0, "pass_at_n": 0.8, "spread": 0.4, "pass_at_n_change": None}
    last = {
        "round": 2,
        "pass_at_n": 0.8 + change[0],
        "spread": 0.4 + spread[0],
        **dict(zip(("pass_at_n_change", "pass_at_n_change_lo", "pass_at_n_change_hi"), change, strict=True)),
        **dict(zip(("spread_change", "spread_change_lo", "spread_change_hi"), spread, strict=True)),
    }
    return [first, last, {"round": 3, "pass_at_n": None}]


def test_diversity_verdict_hand_cases() -> None:
    fell = diversity_verdict(diversity((-0.1, -0.15, -0.05), (-0.2, -0.3, -0.1)))
    assert fell.holds is True and "pass@N fell (CI below 0)" in fell.evidence
    relative = diversity_verdict(diversity((-0.02, -0.06, 0.01), (-0.2, -0.3, -0.1)))
    assert relative.holds is True and "relative to pass@1" in relative.evidence
    assert diversity_verdict(diversity((-0.02, -0.06, 0.01), (-0.05, -0.1, 0.02))).holds is False
    assert diversity_verdict([{"round": 0, "pass_at_n": 0.5}]).holds is None


def test_verdicts_picks_what_the_data_speaks_to() -> None:
    report = rounds((0.2, 0.1, 0.3), (0.0, -0.1, 0.1))
    for r in report[:2]:
        r |= {"pass_at_n": 0.5, "spread": 0.2}
    assert [v.key for v in verdicts(report)] == ["gap_shrinks", "pass_at_n_falls"]
    assert [v.key for v in verdicts(scaling=[])] == ["relative_gap_scales"]
    assert verdicts() == []


def test_report_maj_at_k_and_majority_gap_by_hand() -> None:
    """Round 0 by hand: p0 votes 7, 8, 9 (one each; one sample has no answer): a three-way tie, the right 7 wins
    1/3 of the time; p1 votes 5, 5, 6, 7: 5 (right) wins; p2 votes 2 three times (wrong). maj@4 = (1/3 + 1 + 0) / 3.
    maj@1 is pass@1. Round 1: only p0 votes right: 1/3. The majority filter keeps the tied classes, so its
    J(f[w]) is maj@4 and its gap maj@4 - J(f)."""
    from selfimprove import voting

    gens = [generations(0), generations(1)]
    classes = [voting.answer_classes(g.column("prompt_id").to_pylist(), g.column("answer").to_pylist()) for g in gens]
    gaps = [gap_rows(SPEC, g, verifications(r), classes[r]) for r, g in enumerate(gens)]
    table = report_rows(2, gaps, [evals(r) for r in range(3)], gens, n_boot=200, classes=classes)
    r0, r1, _ = table.to_pylist()
    assert r0["maj_at_4"] == r0["maj_at_n"] == pytest.approx(4 / 9)
    assert r0["maj_at_1"] == pytest.approx(r0["pass_at_1"])
    # maj@2 of p0: 6 pairs; a pair of two answers ties (1/2 if it holds the 7), with the answerless sample the
    # other one wins: {7,8} {7,9} -> 1/2 each, {7,-} -> 1, others 0 -> 2/6. p1: {5,5} 1, {5,6} {5,7} x2 -> 1/2 each
    # (4 pairs), {6,7} 0 -> 3/6. p2: 0.
    assert r0["maj_at_2"] == pytest.approx((2 / 6 + 3 / 6 + 0) / 3)
    assert r1["maj_at_n"] == pytest.approx(1 / 3)
    assert r0["majority_gap"] == pytest.approx(4 / 9 - 0.25)
    assert r0["majority_gap_lo"] <= r0["majority_gap"] <= r0["majority_gap_hi"]
    text = markdown(table)
    assert "maj_at_n" in text and "maj_at_2" not in text and "majority_gap" in text and "kept_fraction" in text


def test_png_once_draws_once_and_never_fails_where_it_cannot_write(tmp_path: Path) -> None:
    from selfimprove.assets.plots import png_once

    calls: list[int] = []
    draw = lambda: calls.append(1) or b"png"  # noqa: E731
    assert png_once(tmp_path / "a.png", draw) == b"png" and png_once(tmp_path / "a.png", draw) == b"png"
    assert calls == [1]
    gone = tmp_path / "removed"  # a folder it cannot write (this suite runs as root: chmod would not stop it)
    assert png_once(gone / "b.png", draw) == b"png"
    assert not gone.exists() and calls == [1, 1]
