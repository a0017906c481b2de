"""The `selfimprove` command, every subcommand in one place:

- `demo` runs an experiment's job (default: the demo) and prints its per-round table;
- `study NAME` runs a study's or an experiment's job and prints its tables, fits and verdicts;
- `sql` runs a read-only query over the warehouse views;
- `dev` starts the Dagster UI, daemon and code server (`dagster dev`) on the prepared instance.
- `models list` / `models build NAME` lists and builds the pretrained models (resources/pretrained.py).

Each subcommand is thin: it parses arguments, calls library code and prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


# --------------------------------------------------------------------------- demo


def demo(args: argparse.Namespace) -> int:
    from selfimprove.assets.reports import markdown
    from selfimprove.resources.warehouse import Warehouse
    from selfimprove.runs import run_job
    from selfimprove.state import warehouse_root

    if not run_job(f"{args.experiment}_job"):
        return 1
    report = Warehouse(warehouse_root()).read("report", args.experiment).drop_columns(["experiment"])
    print(f"\n{args.experiment}: per-round results\n")
    print(markdown(report))
    print(
        f'\nQuery any stage with SQL, e.g.\n  {sys.argv[0]} sql "SELECT round, avg(correct::INT) FROM generations '
        f"WHERE experiment='{args.experiment}' GROUP BY round ORDER BY round\""
    )
    return 0


# --------------------------------------------------------------------------- study


def cross_grid(table: pa.Table, filter_kind: str) -> str:
    """One markdown grid per method: generator rows x verifier-model columns, gap [CI]."""
    from selfimprove.render import ci, md_table

    rows = [r for r in table.to_pylist() if r["filter"] == filter_kind]
    order = list(dict.fromkeys([r["generator"] for r in rows] + [r["verifier_model"] for r in rows]))
    out = []
    for method in dict.fromkeys(r["verifier"] for r in rows):
        cell = {(r["generator"], r["verifier_model"]): r for r in rows if r["verifier"] == method}
        grid = [{"generator": g} | {v: ci(cell[g, v], "gap") for v in order if (g, v) in cell} for g in order]
        title = f"{method} ({filter_kind}): gap [95% CI], generator (rows) x verifier (columns)"
        out.append(title + "\n" + md_table(grid, ["generator", *order]))
    return "\n\n".join(out)


def print_study(name: str, root: str) -> None:
    from selfimprove.assets.reports import markdown
    from selfimprove.assets.scaling import fit_summary
    from selfimprove.definitions import study_specs
    from selfimprove.resources.warehouse import Warehouse
    from selfimprove.verdicts import verdict_markdown, verdicts

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
        print(cross_grid(cross, v.filter))
        plot_paths.append(wh.url(cross.column("plot")[0].as_py()))
    if wh.exists("thresholds", name):
        from selfimprove.assets.thresholds import thresholds_markdown

        thresholds = wh.read("thresholds", name)
        verdicts_md, pairs_md = thresholds_markdown(thresholds.to_pylist())
        print(f"\n{name}: gap against the filter threshold (paper §6.1): shapes and transfer across members\n")
        print(verdicts_md)
        if pairs_md:
            print(f"\n{name}: each member's best setting on every other member\n")
            print(pairs_md)
        plot_paths.append(wh.url(thresholds.column("plot")[0].as_py()))
    print("\nVerdicts\n")
    print(verdict_markdown(verdicts(scaling=rows, verifier=v.verifier, filter=v.filter, min_sizes=v.min_sizes)))
    print("\nPlots:\n  " + "\n  ".join(plot_paths))


def print_experiment(name: str, root: str) -> None:
    from selfimprove.assets.reports import markdown
    from selfimprove.resources.warehouse import Warehouse
    from selfimprove.verdicts import verdict_markdown, verdicts

    wh = Warehouse(root)
    report = wh.read("report", name).drop_columns(["experiment"])
    print(f"\n{name}: per-round results\n")
    print(markdown(report))
    print("\nVerdicts\n")
    print(verdict_markdown(verdicts(report.to_pylist())))
    print("\nPlots:\n  " + "\n  ".join(wh.url(p) for p in report.column("plots")[0].as_py()))


def study(args: argparse.Namespace) -> int:
    from selfimprove.definitions import defs
    from selfimprove.runs import run_job
    from selfimprove.state import warehouse_root

    jobs = {j.name for j in defs.jobs}
    is_study = f"{args.name}_study_job" in jobs
    job_name = f"{args.name}_study_job" if is_study else f"{args.name}_job"
    if job_name not in jobs:
        print(f"no study or experiment named {args.name!r}; jobs: {', '.join(sorted(jobs))}", file=sys.stderr)
        return 2
    if not run_job(job_name):
        return 1
    (print_study if is_study else print_experiment)(args.name, warehouse_root())
    return 0


# --------------------------------------------------------------------------- sql


def sql(args: argparse.Namespace) -> int:
    """0 on success, 2 on any error (one line on stderr)."""
    from selfimprove.sql import FORMATS, SqlError, run_query
    from selfimprove.state import warehouse_root

    if (args.query is None) == (args.file is None):
        print("selfimprove sql: error: give exactly one of QUERY or --file", file=sys.stderr)
        return 2
    try:
        query = args.query if args.file is None else args.file.read_text()
        table = run_query(args.warehouse or warehouse_root(), query)
    except (SqlError, OSError, ValueError) as e:
        print(f"selfimprove sql: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    sys.stdout.write(FORMATS[args.format](table))
    return 0


# --------------------------------------------------------------------------- models


def models(args: argparse.Namespace) -> int:
    """`list`: every buildable model, whether it is built, where; `build NAME`: build it (idempotent)."""
    import logging

    from selfimprove.resources.pretrained import RECIPES, PretrainedError, build, is_built, model_dir
    from selfimprove.state import pretrained_root

    root = pretrained_root()
    if args.action == "list":
        for name, r in sorted(RECIPES.items()):
            state = "built" if is_built(name, root) else f"not built (needs the [{r.extra}] extra)"
            print(f"{name}\t{r.requirement}:{r.gguf}\t{state}\t{model_dir(name, root)}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(build(args.name, root, force=args.force))
    except PretrainedError as exc:
        print(f"selfimprove models build: {exc}", file=sys.stderr)
        return 2
    return 0


# --------------------------------------------------------------------------- dev


def dev(argv: list[str]) -> int:
    """Every argument goes to `dagster dev` as is (so `-h HOST` is the host, not help)."""
    from selfimprove.instance import dev as start_dev

    return start_dev(argv)


# --------------------------------------------------------------------------- the command


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="selfimprove", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("demo", help="run an experiment's job (default: the demo) and print its per-round table")
    p.add_argument("--experiment", default="demo", help="experiment name (a file in experiments/)")
    p.set_defaults(run=demo)

    p = sub.add_parser("study", help="run a study's or an experiment's job and print its tables and verdicts")
    p.add_argument("name", help="a study (experiments/studies/*.yaml) or an experiment (experiments/*.yaml)")
    p.set_defaults(run=study)

    p = sub.add_parser("sql", help="run a read-only SQL query over the warehouse views")
    p.add_argument("query", nargs="?", help='SQL, e.g. "SELECT round, count(*) FROM generations GROUP BY 1"')
    p.add_argument("--file", "-f", type=Path, help="read the SQL from this file instead")
    p.add_argument("--format", choices=["csv", "json", "table"], default="table", help="output format (default table)")
    p.add_argument("--warehouse", help="root (default $SELFIMPROVE_WAREHOUSE, else $SELFIMPROVE_HOME/warehouse)")
    p.set_defaults(run=sql)

    p = sub.add_parser("models", help="list or build the pretrained models ($SELFIMPROVE_HOME/models/pretrained)")
    actions = p.add_subparsers(dest="action", required=True, parser_class=_Parser)
    actions.add_parser("list", help="the buildable pretrained models and whether each is built")
    b = actions.add_parser("build", help="build a pretrained model once (checked, atomic, idempotent)")
    b.add_argument("name")
    b.add_argument("--force", action="store_true", help="rebuild even if a finished build exists")
    p.set_defaults(run=models)

    p = sub.add_parser(
        "dev", add_help=False, help="the Dagster UI on the project's instance (pool limit set, dead runs freed)"
    )
    p.add_argument("dagster_args", nargs=argparse.REMAINDER, help="options passed to `dagster dev`")
    return top


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["dev"]:
        return dev(argv[1:])
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
