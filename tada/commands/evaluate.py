"""`tada evaluate`: evaluation steps that need no model.

``tada evaluate tables --input per_alpha.csv --out DIR [--cutoff-from pci,pci_localized]
[--responds responds.csv]`` computes the protocol's tables (cutoffs, AUC, smoothness, quality,
averages over concepts, relative gain) from a per-alpha CSV; see :mod:`tada.evaluate.tables`.
"""

from __future__ import annotations

import argparse

from . import run_action


def parse_names(text: str) -> list[str]:
    names = [v.strip() for v in str(text).split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated method names")
    return names


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluation tables from per-alpha scores",
                       description="Evaluation steps that need no model.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    t = actions.add_parser("tables", help="AUC / smoothness / quality tables from a per-alpha CSV",
                           description="Read a per-alpha CSV (columns method, concept, alpha, "
                                       "preservation, align_<scorer>..., optional quality_<axis>...) "
                                       "and write cutoffs.csv, per_concept.{csv,md}, average.{csv,md} "
                                       "and relative_gain.{csv,md} to --out.")
    t.add_argument("--input", required=True, help="per-alpha CSV")
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--cutoff-from", type=parse_names, default=None,
                   help="comma-separated methods whose distortion sets the cutoff "
                        "(default: every method whose name starts with 'pci')")
    t.add_argument("--responds", default=None,
                   help="optional CSV with columns concept, responds: concepts flagged '†' when false")
    t.set_defaults(action_func=run_tables)
    p.set_defaults(func=lambda args: run(args, p))


def run(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    return run_action(args, parser)


def run_tables(args: argparse.Namespace) -> int:
    import pandas as pd

    from tada.evaluate.tables import read_per_alpha, write_tables

    frame = read_per_alpha(args.input)
    responds = None
    if args.responds:
        responds = pd.read_csv(args.responds)
    result = write_tables(frame, args.out, cutoff_from=args.cutoff_from, responds=responds,
                          source=str(args.input))
    for path in result["files"].values():
        print(path)
    return 0
