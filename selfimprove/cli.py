"""The `selfimprove` command: `demo` runs the demo experiment, `study` a study or experiment with its
verdicts, `sql` queries the warehouse, `models` lists and builds the pretrained models (`models build NAME`)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="selfimprove", description=__doc__)
    parser.add_argument("command", choices=["demo", "study", "sql", "models"])
    args, rest = parser.parse_known_args(argv[:1])
    if args.command == "models":
        return models_main(argv[1:])
    if args.command == "sql":
        from selfimprove.sql import main as sql_main

        return sql_main(argv[1:])
    if args.command == "study":
        from selfimprove.pipelines.study_cli import main as study_main

        return study_main(argv[1:])
    from selfimprove.pipelines.demo import main as demo_main

    return demo_main(argv[1:])


def models_main(argv: list[str]) -> int:
    """`selfimprove models list` | `selfimprove models build NAME [--force]`."""
    parser = argparse.ArgumentParser(prog="selfimprove models", description=models_main.__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="the buildable pretrained models and whether each is built")
    b = sub.add_parser("build", help="build a pretrained model into $SELFIMPROVE_HOME/models/pretrained (idempotent)")
    b.add_argument("name")
    b.add_argument("--force", action="store_true", help="rebuild even if a finished build exists")
    args = parser.parse_args(argv)
    import logging

    from selfimprove.assets.models import pretrained_root
    from selfimprove.resources.pretrained import RECIPES, PretrainedError, build, is_built, model_dir

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


if __name__ == "__main__":
    raise SystemExit(main())
