"""`tada study`: the listening study (build a bundle, serve it, analyse the ratings).

``tada study serve --bundle DIR --port N [--ratings FILE] [--host 127.0.0.1]`` serves a bundle
and appends every submission to the ratings file (default: ``ratings.jsonl`` beside the bundle);
``tada study bundle --results results/<model> --out DIR [--config config.yaml]`` builds a bundle
from a finished run (what the ``study_bundle`` rule does); ``tada study analyse --ratings FILE
--bundle DIR --out DIR`` writes the analysis tables and figures; ``tada study screenshot
--bundle DIR --out PNG`` photographs a trial in headless Chromium. See docs/study.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import run_action


def add_parser(sub: argparse._SubParsersAction) -> None:
    from tada.study.server import DEFAULT_MAX_BODY

    p = sub.add_parser("study", help="listening study: bundle, serve, analyse",
                       description="The listening study of the paper's appendix I (docs/study.md).")
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    s = actions.add_parser("serve", help="serve a study bundle and collect ratings",
                           description="Serve a bundle's rating page and append every accepted submission, "
                                       "fsynced, to the ratings file (JSON Lines).")
    s.add_argument("--bundle", required=True, help="bundle directory (manifest.json + public/)")
    s.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    s.add_argument("--ratings", default=None, help="ratings file (default: ratings.jsonl beside the bundle)")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    s.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, help="largest submission in bytes")
    s.set_defaults(action_func=run_serve)

    b = actions.add_parser("bundle", help="build a bundle from a finished run",
                           description="Build the study bundle of the config's `study` block from the sweeps, "
                                       "scores and calibrations of a finished run.")
    b.add_argument("--config", default="config.yaml", help="workflow config (default config.yaml)")
    b.add_argument("--results", default=None, help="results/<model> of the run (default: from the config)")
    b.add_argument("--prompts", default="results/prompts/evaluation.csv", help="evaluation prompt table")
    b.add_argument("--out", required=True, help="bundle directory to write (replaced)")
    b.add_argument("--no-render", action="store_true", help="fail instead of rendering stops the sweeps lack")
    b.set_defaults(action_func=run_bundle)

    a = actions.add_parser("analyse", help="tables and figures from a ratings file",
                           description="Analyse a ratings file (rows with listened = true).")
    a.add_argument("--ratings", required=True, help="ratings file (JSON Lines)")
    a.add_argument("--bundle", default=None, help="bundle directory (automatic metrics of the clips)")
    a.add_argument("--out", required=True, help="output directory")
    a.set_defaults(action_func=run_analyse)

    c = actions.add_parser("screenshot", help="PNG of a trial in headless Chromium",
                           description="Serve the bundle on a free loopback port and photograph its first trial.")
    c.add_argument("--bundle", required=True, help="bundle directory")
    c.add_argument("--out", required=True, help="PNG file")
    c.set_defaults(action_func=run_screenshot)
    p.set_defaults(func=lambda args: run(args, p))


def run(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    return run_action(args, parser)


def run_serve(args: argparse.Namespace) -> int:
    from tada.study.server import serve

    ratings = args.ratings or Path(args.bundle).resolve().parent / "ratings.jsonl"
    print(f"study: http://{args.host}:{args.port}/  (ratings -> {ratings})", flush=True)
    serve(args.bundle, ratings, host=args.host, port=args.port, max_body=args.max_body)
    return 0


def run_bundle(args: argparse.Namespace) -> int:
    from tada.config import load_config
    from tada.study.build import bundle_from_config

    config = load_config(args.config)
    results = args.results or f"results/{config['model']}"
    manifest = bundle_from_config(config, results, args.out, prompts=args.prompts, render=not args.no_render)
    print(f"{args.out}: {len(manifest['trials'])} trials, bundle {manifest['id']}")
    return 0


def run_analyse(args: argparse.Namespace) -> int:
    from tada.study.analysis import analyse
    from tada.study.plan import read_manifest

    manifest = read_manifest(args.bundle) if args.bundle else None
    result = analyse(args.ratings, args.out, manifest)
    print(f"{args.out}: {len(result['kept'])} listened samples analysed, "
          f"{len(result['problems'])} malformed line(s) reported")
    return 0


def run_screenshot(args: argparse.Namespace) -> int:
    from tada.study.browser import screenshot

    print(screenshot(args.bundle, args.out))
    return 0
