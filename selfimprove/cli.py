"""The `selfimprove` command: `demo` runs the demo experiment, `study` a study or experiment with its
verdicts, `sql` queries the warehouse, `dev` starts the Dagster UI (`dagster dev`) on the project's instance."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="selfimprove", description=__doc__)
    parser.add_argument("command", choices=["demo", "study", "sql", "dev"])
    args, rest = parser.parse_known_args(argv[:1])
    if args.command == "dev":
        from selfimprove.instance import dev

        return dev(argv[1:])
    if args.command == "sql":
        from selfimprove.sql import main as sql_main

        return sql_main(argv[1:])
    if args.command == "study":
        from selfimprove.pipelines.study_cli import main as study_main

        return study_main(argv[1:])
    from selfimprove.pipelines.demo import main as demo_main

    return demo_main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
