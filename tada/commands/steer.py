"""`tada steer`: render an α sweep of a steering vector for one or more prompts.

Every α of a prompt is generated from the same seed, and the α values are batched into one
generation (one α per prompt of the batch). Writes one WAV per (prompt, α), an ``index.csv``
and a spectrogram sheet ``sheet.png`` (prompts down, α across).

``tada steer --from-sidecar clip.json --out DIR`` instead renders one clip saved by the steering
playground (``tada play``) again, bit for bit: the sidecar fixes the model (weights hash),
prompt, seed, sampler settings, vectors (file hashes) and α, and the whole batch the clip came
from; it writes ``DIR/<sidecar name>.wav``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import add_model_args, generation_kwargs, load_model_from_args


def parse_floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc
    if not values:
        raise argparse.ArgumentTypeError("expected at least one value")
    return values


def parse_layers(text: str) -> list[int | str]:
    return [int(v) if v.strip().lstrip("-").isdigit() else v.strip() for v in text.split(",") if v.strip()]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("steer", help="render an alpha sweep of a steering vector",
                       description="Generate one clip per alpha (same seed) with a steering vector "
                                   "added, plus a spectrogram sheet.")
    p.add_argument("--vector", default=None, help="steering vector (.safetensors); required unless --from-sidecar")
    p.add_argument("--alpha", type=parse_floats, default=[-2.0, -1.0, 0.0, 1.0, 2.0],
                   help="comma-separated alphas, e.g. --alpha=-2,-1,0,1,2 (default)")
    p.add_argument("--prompt", action="append", default=None,
                   help="text prompt (repeat for several prompts); required unless --from-sidecar")
    p.add_argument("--from-sidecar", default=None, metavar="FILE",
                   help="render the clip of a `tada play` sidecar (JSON) again, bit for bit; the sidecar's "
                        "model, prompt, seed, steps, vectors and alpha replace the other options")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="seed of every clip (default 0)")
    p.add_argument("--layers", type=parse_layers, default=None,
                   help="comma-separated layer indices or names to steer (default: the vector's)")
    p.add_argument("--start-step", type=int, default=0, help="first sampler step steered")
    p.add_argument("--renorm", action="store_true", help="keep each steered token's norm")
    p.add_argument("--resample-steps", action="store_true",
                   help="allow --steps other than the vector's: resample its per-step schedule linearly")
    add_model_args(p)
    p.set_defaults(func=run)


def clip_name(prompt_index: int, alpha: float) -> str:
    return f"p{prompt_index:02d}_alpha{alpha:+.3g}.wav"


def spectrogram(audio: np.ndarray, sample_rate: int, n_fft: int = 512) -> np.ndarray:
    """Log-power STFT (freq, time) in dB of a (channels, samples) or (samples,) clip."""
    x = np.asarray(audio, dtype=np.float64)
    x = x.mean(axis=0) if x.ndim == 2 else x
    n_fft = int(min(n_fft, max(16, 2 ** int(np.log2(max(len(x), 16))))))
    hop = n_fft // 4
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return 10 * np.log10(power.T + 1e-10)


def save_sheet(path: Path, images: list[list[np.ndarray]], prompts: Sequence[str], alphas: Sequence[float],
               title: str) -> None:
    """Grid of spectrograms: one row per prompt, one column per α (as in the paper's appendix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tada.io import atomic_path

    rows, cols = len(images), len(alphas)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.0 * rows + 0.6), squeeze=False)
    for r in range(rows):
        lo = min(float(np.percentile(img, 5)) for img in images[r])
        hi = max(float(img.max()) for img in images[r])
        for c in range(cols):
            ax = axes[r][c]
            ax.imshow(images[r][c], origin="lower", aspect="auto", cmap="magma", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"α = {alphas[c]:+g}", fontsize=9)
            if c == 0:
                ax.set_ylabel(prompts[r][:28] + ("…" if len(prompts[r]) > 28 else ""), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def render_sweep(model: Any, vector: Any, prompts: Sequence[str], alphas: Sequence[float], *, seed: int = 0,
                 layers: Sequence[int | str] | None = None, start_step: int = 0, renorm: bool = False,
                 progress: bool = True, resample_steps: bool = False,
                 **gen_kwargs: Any) -> list[dict[str, Any]]:
    """Generate every (prompt, α) clip, batched by ``model.batch_size``; one dict per clip with
    prompt_index, prompt, alpha, seed, audio, features, sample_rate."""
    from tqdm import tqdm

    from tada.steering.api import steer

    jobs = [(i, p, float(a)) for i, p in enumerate(prompts) for a in alphas]
    out: list[dict[str, Any]] = []
    bar = tqdm(total=len(jobs), desc="steer", unit="clip", disable=not progress)
    for start in range(0, len(jobs), model.batch_size):
        chunk = jobs[start:start + model.batch_size]
        with steer(model, vector, alpha=[a for _, _, a in chunk], layers=layers, start_step=start_step,
                   renorm=renorm, resample_steps=resample_steps):
            gen = model.generate([p for _, p, _ in chunk], seeds=[seed] * len(chunk), **gen_kwargs)
        for j, (i, p, a) in enumerate(chunk):
            out.append({"prompt_index": i, "prompt": p, "alpha": a, "seed": seed, "audio": gen.audio[j],
                        "features": None if gen.features is None else gen.features[j],
                        "sample_rate": gen.sample_rate})
        bar.update(len(chunk))
    bar.close()
    return out


def run_sidecar(args: argparse.Namespace) -> int:
    """Render the clip of a playground sidecar again (same batch, same weights, same vectors)."""
    from tada.io import write_audio
    from tada.play.sidecar import load_sidecar, regenerate

    meta = load_sidecar(args.from_sidecar)
    args.model = args.model or meta["model"].get("name")
    model, _ = load_model_from_args(args)
    audio, sample_rate = regenerate(model, meta)
    path = Path(args.out) / (Path(args.from_sidecar).stem + ".wav")
    write_audio(path, audio, sample_rate)
    print(path)
    return 0


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from tada.io import write_audio, write_csv
    from tada.steering.vectors import SteeringVector

    if args.from_sidecar:
        return run_sidecar(args)
    if not args.vector or not args.prompt:
        raise ValueError("--vector and --prompt are required (or --from-sidecar FILE)")
    vector = SteeringVector.load(args.vector)
    model, _ = load_model_from_args(args)
    vector.check_compatible(model, None if args.layers is None else model.resolve_layers(args.layers))
    kwargs = generation_kwargs(args)
    if vector.steps > 1:
        kwargs.setdefault("steps", vector.steps)
        if kwargs["steps"] != vector.steps and not args.resample_steps:
            raise ValueError(f"--steps {kwargs['steps']} differs from the vector's {vector.steps} "
                             "per-step vectors; use the vector's step count or --resample-steps")
    out = Path(args.out)
    clips = render_sweep(model, vector, args.prompt, args.alpha, seed=args.seed, layers=args.layers,
                         start_step=args.start_step, renorm=args.renorm,
                         resample_steps=args.resample_steps, **kwargs)
    rows, images = [], [[None] * len(args.alpha) for _ in args.prompt]
    for k, clip in enumerate(clips):
        path = out / clip_name(clip["prompt_index"], clip["alpha"])
        write_audio(path, clip["audio"], clip["sample_rate"])
        feats = clip["features"]
        img = np.asarray(feats).T if feats is not None and np.ndim(feats) == 2 else \
            spectrogram(clip["audio"], clip["sample_rate"])
        images[clip["prompt_index"]][k % len(args.alpha)] = img
        rows.append({"file": path.name, "prompt_index": clip["prompt_index"], "prompt": clip["prompt"],
                     "alpha": clip["alpha"], "seed": clip["seed"]})
        print(path)
    write_csv(out / "index.csv", pd.DataFrame(rows))
    save_sheet(out / "sheet.png", images, args.prompt, args.alpha,
               f"{vector.method} / {vector.layer_set} / {vector.concept}")
    print(out / "sheet.png")
    return 0
