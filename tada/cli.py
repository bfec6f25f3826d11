"""The `tada` command line. Each subcommand lives in `tada.commands.<name>` and defines
`add_parser(subparsers)` and `run(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: subcommands in the order `--help` lists them
COMMANDS = ["generate", "steer", "evaluate", "study", "play"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tada", description=(
        "Find where text-to-music diffusion models decide musical concepts, and steer them."))
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"tada.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tada.commands.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, KeyError, ValueError, RuntimeError, ImportError) as exc:
        print(f"tada {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
