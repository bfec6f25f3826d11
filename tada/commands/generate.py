"""`tada generate`: text to audio with any configured backend."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_model_args, generation_kwargs, load_model_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate audio from prompts",
                       description="Generate one audio file per prompt with the configured model.")
    p.add_argument("prompts", nargs="+", help="text prompts")
    p.add_argument("--out", required=True,
                   help="output .wav/.flac for one prompt, or a directory for several")
    p.add_argument("--seed", type=int, default=0, help="seed of the first prompt (next prompts +1)")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tada.io import write_audio

    model, _ = load_model_from_args(args)
    out = Path(args.out)
    single = len(args.prompts) == 1 and out.suffix.lower() in (".wav", ".flac")
    if not single and out.suffix:
        raise ValueError(f"--out {out}: give a directory when generating {len(args.prompts)} prompts")
    paths = [out] if single else [out / f"{i:03d}.wav" for i in range(len(args.prompts))]
    bs = model.batch_size
    for start in tqdm(range(0, len(args.prompts), bs), desc="generate", unit="batch",
                      disable=len(args.prompts) <= bs):
        prompts = args.prompts[start:start + bs]
        gen = model.generate(prompts, seeds=[args.seed + start + i for i in range(len(prompts))],
                             **generation_kwargs(args))
        for i, audio in enumerate(gen.audio):
            write_audio(paths[start + i], audio, gen.sample_rate)
            print(paths[start + i])
    return 0
