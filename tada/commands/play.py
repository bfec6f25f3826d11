"""`tada play`: the steering playground, a web page to hear steering vectors while dragging α.

``tada play [--config config.yaml] [--results results/<model>] [--port 8001] [--host 127.0.0.1]
[--out DIR] [--steps N]`` loads the config's model and every steering vector of the run
folder, and serves the page (docs/play.md). "Save" writes a WAV and a JSON sidecar under --out
(default ``<results>/play``);
``tada steer --from-sidecar FILE --out DIR`` renders that clip again, bit for bit.
"""

from __future__ import annotations

import argparse

from . import add_model_args, generation_kwargs, load_model_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    from tada.play.engine import STOPS

    p = sub.add_parser("play", help="steering playground: a prompt, concepts, an alpha slider",
                       description="Serve the steering playground: type a prompt, pick up to three concepts "
                                   "and a method, and hear the alpha stops while dragging the slider.")
    p.add_argument("--results", default=None, help="run folder with vectors/ and calibration/ "
                                                   "(default: results/<model>)")
    p.add_argument("--port", type=int, default=8001, help="TCP port (default 8001)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--out", default=None,
                   help="folder of saved clips and sidecars (default: <results>/play)")
    p.add_argument("--stops", type=int, default=STOPS, help=f"stops of the first slider, odd (default {STOPS})")
    p.add_argument("--one-batch", action="store_true",
                   help="render all stops in one batch instead of the stop under the slider first")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--screenshot", default=None, metavar="PNG",
                   help="instead of serving: generate once in headless Chromium and save the page as PNG")
    add_model_args(p)
    p.set_defaults(func=run)


def build_engine(args: argparse.Namespace):
    """The loaded model and vectors of `args` as a :class:`tada.play.engine.Engine`."""
    import torch

    from tada.config import model_config
    from tada.play.engine import Catalog, Engine

    if getattr(args, "threads", None):
        torch.set_num_threads(int(args.threads))
    model, config = load_model_from_args(args)
    name, _block = model_config(config, args.model)
    catalog = Catalog(args.results or f"results/{name}")
    return Engine(model, catalog, model_name=name, stops=args.stops, split_first=not args.one_batch,
                  **generation_kwargs(args))


def run(args: argparse.Namespace) -> int:
    from tada.play.server import serve

    engine = build_engine(args)
    if args.screenshot:
        from tada.play.browser import screenshot

        print(screenshot(engine, args.screenshot))
        engine.close()
        return 0
    print(f"tada play: {len(engine.catalog.entries)} vectors from {engine.catalog.results_dir}; "
          f"open http://{args.host}:{args.port}/")
    serve(engine, args.out or engine.catalog.results_dir / "play", host=args.host, port=args.port)
    return 0
