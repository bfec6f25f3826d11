"""Subcommands of the `tada` CLI."""

from __future__ import annotations

import argparse
from typing import Any


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """Options every model-using command shares."""
    parser.add_argument("--config", default="config.yaml", help="config file (default: config.yaml)")
    parser.add_argument("--model", default=None, help="entry of `models` to use (default: config's `model`)")
    parser.add_argument("--device", default=None, help="override the model's device (cpu, cuda, cuda:N)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps")
    parser.add_argument("--guidance", type=float, default=None, help="CFG scale")
    parser.add_argument("--duration", type=float, default=None, help="seconds of audio")


def load_model_from_args(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """Load the config named by --config and build the model it (or --model) names."""
    from tada.config import load_config, model_config
    from tada.models import load_model

    config = load_config(args.config)
    name, block = model_config(config, args.model)
    if args.device:
        block["device"] = args.device
    return load_model(block, key=f"models.{name}"), config


def generation_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in ("steps", "guidance", "duration") if getattr(args, k) is not None}


def run_action(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    """Run the action a command with sub-actions chose (`action_func`), or print its help."""
    action = getattr(args, "action_func", None)
    if action is None:
        if parser is not None:
            parser.print_help()
        return 2
    return int(action(args) or 0)
