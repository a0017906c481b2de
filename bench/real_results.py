"""The tables of docs/results.md §6 (the real model), rendered from the warehouse: sampling accuracy, the gap with
its CI per verifier × filter with within-prompt AUROC and parse failures, each curve's best threshold and
shape (`threshold_sweep`), and the rounds table with pass@k and maj@k where the experiment's loop ran. Needs
the experiment's round 0 (`selfimprove study smollm2_tasks`) or its finished loop (`selfimprove study
smollm2_word_arithmetic`); --study adds a study's threshold verdicts and pairwise transfer table:

    .venv/bin/python bench/real_results.py [--experiment smollm2_word_arithmetic] [--study smollm2_tasks]
"""

from __future__ import annotations

import argparse

from selfimprove.render import ci, md_table
from selfimprove.resources.warehouse import Warehouse
from selfimprove.state import warehouse_root


def gap_rows(wh: Warehouse, name: str, rnd: int) -> list[dict]:
    """One row per verifier × filter of `round_rnd/gap`, the gap as `value [lo, hi]`."""
    out = []
    for r in wh.read("gap", name, rnd).to_pylist():
        out.append(
            {
                "verifier": r["verifier"],
                "filter": r["filter"] + (" (configured)" if r["configured"] else ""),
                "J(f)": r["j_f"],
                "J(f[w])": r["j_fw"],
                "gap [95% CI]": ci(r, "gap"),
                "kept": r["kept_fraction"],
                "AUROC within prompt": r["auroc_within_prompt"],
                "mixed prompts": r["n_mixed_prompts"],
                "parse failures": r["parse_failure_rate"],
            }
        )
    return sorted(out, key=lambda r: (r["verifier"], r["filter"]))


def sweep_rows(wh: Warehouse, name: str, rnd: int) -> list[dict]:
    """Each curve's best setting of `round_rnd/threshold_sweep`: gap [CI], kept fraction, the curve's shape."""
    out = []
    for r in wh.read("threshold_sweep", name, rnd).to_pylist():
        if r["best"]:
            out.append(
                {
                    "verifier": r["verifier"],
                    "axis": r["axis"],
                    "best setting": r["setting"],
                    "gap [95% CI]": ci(r, "gap"),
                    "kept": r["kept_fraction"],
                    "shape": r["shape"],
                }
            )
    return sorted(out, key=lambda r: (r["verifier"], r["axis"]))


def print_study(wh: Warehouse, study: str) -> None:
    from selfimprove.assets.thresholds import thresholds_markdown

    verdicts_md, pairs_md = thresholds_markdown(wh.read("thresholds", study).to_pylist())
    print(f"\n#### {study}: shapes and transfer (paper §6.1)\n")
    print(verdicts_md)
    if pairs_md:
        print(f"\n#### {study}: each member's best setting on every other member\n")
        print(pairs_md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", default="smollm2_word_arithmetic")
    p.add_argument("--study", help="also print this study's threshold verdicts and pairwise transfer")
    args = p.parse_args()
    name = args.experiment
    wh = Warehouse(warehouse_root())
    report = wh.read("report", name).to_pylist() if wh.exists("report", name) else []
    rounds = [r["round"] for r in report if r.get("j_f") is not None] or [0]
    for rnd in rounds:
        print(f"\n#### Round {rnd}: gap per verifier × filter\n")
        rows = gap_rows(wh, name, rnd)
        print(md_table(rows, list(rows[0])))
        print(f"\n#### Round {rnd}: best threshold per verifier × axis (threshold_sweep)\n")
        best = sweep_rows(wh, name, rnd)
        print(md_table(best, list(best[0]), float_format="g"))
    if args.study:
        print_study(wh, args.study)
    if not report:
        return
    n = max(int(c.removeprefix("pass_at_")) for c in report[0] if c.removeprefix("pass_at_").isdigit())
    ks = [k for k in (1, 2, 4, 8, 16) if k <= n]
    print("\n#### Rounds\n")
    cols = ["round", "eval_greedy", "eval_sampled", "j_f", "j_fw", "gap [95% CI]", "auroc_within_prompt"]
    cols += [f"pass_at_{k}" for k in ks] + [f"maj_at_{k}" for k in ks] + ["pass_at_n_change", "distinct_answers"]
    table = []
    for r in report:
        table.append({**r, "gap [95% CI]": ci(r, "gap") if r.get("gap") is not None else None})
    print(md_table(table, cols))


if __name__ == "__main__":
    main()
