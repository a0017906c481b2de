"""`selfimprove study NAME`: run a study's job (experiments/studies/NAME.yaml) or an experiment's job
(experiments/NAME.yaml) through Dagster, then print its tables, fits, verdicts and where the plots are."""

from __future__ import annotations

import argparse
import sys

import pyarrow as pa
import pyarrow.compute as pc

from selfimprove.pipelines.demo import run_job


def _cross_grid(table: pa.Table, filter_kind: str) -> str:
    """One text grid per method: generator rows x verifier-model columns, gap [CI]."""
    rows = [r for r in table.to_pylist() if r["filter"] == filter_kind]
    order = list(dict.fromkeys([r["generator"] for r in rows] + [r["verifier_model"] for r in rows]))
    out = []
    for method in dict.fromkeys(r["verifier"] for r in rows):
        cell = {(r["generator"], r["verifier_model"]): r for r in rows if r["verifier"] == method}
        lines = [f"{method} ({filter_kind}): gap [95% CI], generator (rows) x verifier (columns)"]
        lines.append("| generator | " + " | ".join(order) + " |")
        lines.append("|---|" + "---:|" * len(order))
        for g in order:
            cells = []
            for v in order:
                r = cell.get((g, v))
                cells.append("" if r is None else f"{r['gap']:.3f} [{r['gap_lo']:.3f}, {r['gap_hi']:.3f}]")
            lines.append(f"| {g} | " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def print_study(name: str, root: str) -> None:
    from selfimprove.assets.reports import markdown, verdict_markdown, verdicts
    from selfimprove.assets.scaling import fit_summary
    from selfimprove.definitions import study_specs
    from selfimprove.resources.warehouse import Warehouse

    study = next(s for s in study_specs() if s.name == name)
    v = study.spec.verdict
    wh = Warehouse(root)
    table = wh.read("relative_gap", name)
    rows = table.to_pylist()
    configured = table.filter(pc.equal(table.column("filter"), v.filter))
    cols = ["member", "size", "n_params", "log10_flops", "verifier", "j_f", "gap", "gap_lo", "gap_hi"]
    cols += ["relative_gap", "relative_gap_lo", "relative_gap_hi"]
    print(f"\n{name}: round-0 gap per member ({v.filter} filter)\n")
    print(markdown(configured, cols))
    print(f"\n{name}: linear fit of relative gap on log10 FLOPs, per verifier x filter\n")
    print(markdown(pa.Table.from_pylist(fit_summary(rows))))
    plot_paths = [wh.url(rows[0]["plot"])] if rows else []
    if wh.exists("cross_verification", name):
        cross = wh.read("cross_verification", name)
        print(f"\n{name}: cross-verification\n")
        print(_cross_grid(cross, v.filter))
        plot_paths.append(wh.url(cross.column("plot")[0].as_py()))
    print("\nVerdicts\n")
    print(verdict_markdown(verdicts(scaling=rows, verifier=v.verifier, filter=v.filter, min_sizes=v.min_sizes)))
    print("\nPlots:\n  " + "\n  ".join(plot_paths))


def print_experiment(name: str, root: str) -> None:
    from selfimprove.assets.reports import markdown, verdict_markdown, verdicts
    from selfimprove.resources.warehouse import Warehouse

    wh = Warehouse(root)
    report = wh.read("report", name).drop_columns(["experiment"])
    print(f"\n{name}: per-round results\n")
    print(markdown(report))
    print("\nVerdicts\n")
    print(verdict_markdown(verdicts(report.to_pylist())))
    print("\nPlots:\n  " + "\n  ".join(wh.url(p) for p in report.column("plots")[0].as_py()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="selfimprove study", description=__doc__)
    parser.add_argument("name", help="a study (experiments/studies/*.yaml) or an experiment (experiments/*.yaml)")
    args = parser.parse_args(argv)
    from selfimprove.definitions import defs
    from selfimprove.state import warehouse_root

    jobs = {j.name for j in defs.jobs}
    study = f"{args.name}_study_job" in jobs
    job_name = f"{args.name}_study_job" if study else f"{args.name}_job"
    if job_name not in jobs:
        print(f"no study or experiment named {args.name!r}; jobs: {', '.join(sorted(jobs))}", file=sys.stderr)
        return 2
    if not run_job(job_name):
        return 1
    (print_study if study else print_experiment)(args.name, warehouse_root())
    return 0
