"""Contrastive text-audio scorer on transformers' :class:`~transformers.ClapModel`.

One class serves two kinds of weights:

* the real LAION CLAP (``ClapModel.from_pretrained(local_dir)`` + its ``ClapProcessor``): audio is
  resampled to the processor's rate and turned into its features;
* the world CLAP trained here (``python -m tada.scorers.clap --train --out DIR``): a small
  ``ClapModel`` (HTSAT-style audio encoder, RoBERTa-style text encoder with a byte-level BPE
  tokenizer) trained contrastively on rendered world clips and captions. Its audio input is the
  world log-mel (:func:`tada.world.features.log_mel`), so it scores ``Generation.features`` of
  the embedded model directly. ``tada_clap.json`` in its directory says so.

Similarity is the cosine between the projected, normalised audio and text embeddings.

:meth:`ClapScorer.stage_features` exposes the audio encoder's per-stage feature maps (what the
preservation distance LPAPS, :mod:`tada.scorers.lpaps`, compares): four stages for the LAION
CLAP, two for the world CLAP (its audio encoder has ``depths=[2, 2]``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .base import Clips, Scorer

log = logging.getLogger(__name__)

META = "tada_clap.json"

#: concept -> (alignment texts, one per class, in class order) used for the ranking check
RANKING_TEXTS: dict[str, tuple[tuple[str, Any], ...]] = {
    "tempo": (("a fast track", "fast"), ("a slow track", "slow")),
    "mood": (("a cheerful track", "happy"), ("a sad track", "sad")),
    "lead": (("a piano song", "piano"), ("a song with violin", "violin"),
             ("a song with acoustic guitar", "acoustic_guitar"), ("a song with electric guitar", "electric_guitar"),
             ("a song with flute", "flute"), ("a song with trumpet", "trumpet")),
    "vocal": (("This is a music of a female vocal singing", "female"),
              ("This is a music of a male vocal singing", "male")),
    "vocal_style": (("This is music with rap vocal", "rap"), ("This is music with sing vocal", "sung")),
    "genre": (("a classical song", "classical"), ("an electronic song", "electronic"), ("a jazz song", "jazz"),
              ("a rock song", "rock"), ("a reggae song", "reggae")),
}


def _pooled(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    return out.pooler_output


class ClapScorer(Scorer):
    """Cosine similarity between CLAP audio and text embeddings."""

    kind = "clap"

    def __init__(self, path: str | Path, device: str = "cpu", batch_size: int = 16):
        from transformers import ClapModel

        self.path = Path(path)
        if not (self.path / "config.json").exists():
            raise FileNotFoundError(f"no CLAP weights in '{self.path}' (expected config.json + model weights); "
                                    "train the world CLAP with `python -m tada.scorers.clap --train --out DIR`")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.model = ClapModel.from_pretrained(str(self.path)).to(self.device).eval()
        meta_path = self.path / META
        self.meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        self.world = self.meta.get("features") == "world_log_mel"
        if self.world:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
            self.processor = None
        else:
            from transformers import ClapProcessor

            self.processor = ClapProcessor.from_pretrained(str(self.path))
            self.tokenizer = self.processor.tokenizer
        self._text_cache: dict[str, torch.Tensor] = {}

    # ----- embeddings -------------------------------------------------------------------------
    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            tok = self.tokenizer(list(missing), padding=True, truncation=True,
                                 max_length=int(self.meta.get("max_text_length", 77)), return_tensors="pt")
            tok = {k: v.to(self.device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}
            emb = F.normalize(_pooled(self.model.get_text_features(**tok)).float(), dim=-1)
            for t, e in zip(missing, emb):
                self._text_cache[t] = e
        return torch.stack([self._text_cache[t] for t in texts])

    def _audio_inputs(self, clips: Clips) -> dict[str, torch.Tensor]:
        """Audio-encoder inputs of one batch: world log-mels via :func:`world_input` (first
        :data:`WORLD_FRAMES` frames), or the LAION processor's features (resampled audio)."""
        if self.world:
            mels = clips.features if clips.features is not None else _world_mels(clips.audio, clips.sample_rate)
            x = world_input(np.asarray(mels, dtype=np.float32), int(self.meta.get("time_pool", 2)))
            return {"input_features": x.to(self.device)}
        fe = self.processor.feature_extractor
        audio = [_resample(a, clips.sample_rate, fe.sampling_rate) for a in clips.audio]
        inputs = fe(audio, sampling_rate=fe.sampling_rate, return_tensors="pt")
        return {k: v.to(self.device) for k, v in inputs.items() if k in ("input_features", "is_longer")}

    @torch.no_grad()
    def embed_audio(self, clips: Clips) -> torch.Tensor:
        return F.normalize(_pooled(self.model.get_audio_features(**self._audio_inputs(clips))).float(), dim=-1)

    @torch.no_grad()
    def stage_features(self, clips: Any, sample_rate: int | None = None) -> list[torch.Tensor]:
        """The audio encoder's stage feature maps, one float32 tensor ``(B, C_s, H_s, W_s)`` per
        Swin/HTSAT stage, on the scorer's device, computed in batches of ``batch_size`` clips.

        Each map is the output of a stage's Swin blocks *before* its patch merging (transformers'
        ``hidden_states`` with ``output_hidden_states_before_downsampling=True``, minus entry 0,
        the patch embedding), so stage ``s`` has its own resolution and width. The LAION HTSAT
        CLAP has four stages (96/192/384/768 channels at 64x64 ... 8x8); the world CLAP has two:
        ``(B, 64, 8, 8)`` and ``(B, 128, 4, 4)`` for its 128-frame, 64-mel input. Inputs are
        prepared as in :meth:`embed_audio` (the world CLAP sees the first :data:`WORLD_FRAMES`
        frames; the LAION processor truncates/pads to its 10 s), so long clips must be windowed
        by the caller (:func:`tada.scorers.lpaps.lpaps` does).
        """
        from .base import _slice, as_clips

        view = as_clips(clips, sample_rate)
        per_stage: list[list[torch.Tensor]] = []
        for start in range(0, len(view), self.batch_size):
            batch = _slice(view, start, start + self.batch_size)
            out = self.model.audio_model(**self._audio_inputs(batch), output_hidden_states=True,
                                         output_hidden_states_before_downsampling=True)
            maps = [h.float() for h in out.hidden_states[1:]]
            if not per_stage:
                per_stage = [[] for _ in maps]
            for acc, m in zip(per_stage, maps):
                acc.append(m)
        return [torch.cat(acc) for acc in per_stage]

    def _similarity(self, clips: Clips, texts: list[str]) -> np.ndarray:
        a = self.embed_audio(clips)
        t = self.embed_texts(texts)
        return (a @ t.T).cpu().numpy()


def _resample(audio: np.ndarray, sr: int, target: int) -> np.ndarray:
    if int(sr) == int(target):
        return np.asarray(audio, dtype=np.float32)
    import librosa

    return librosa.resample(np.asarray(audio, dtype=np.float32), orig_sr=int(sr), target_sr=int(target))


def _world_mels(audio: np.ndarray, sr: int) -> np.ndarray:
    from ..world.features import log_mel

    mels = [log_mel(a, sr=sr) for a in audio]
    n = min(len(m) for m in mels)
    return np.stack([m[:n] for m in mels])


#: log-mel frames the world CLAP sees per clip (4 s at 32 frames/s); longer clips are cropped
WORLD_FRAMES = 128


def world_input(mels: np.ndarray | torch.Tensor, time_pool: int = 2, frames: int = WORLD_FRAMES) -> torch.Tensor:
    """World log-mels (B, frames, n_mels) -> CLAP input features (B, 1, frames/time_pool, n_mels).

    Clips are cropped or padded (with silence, -1) to `frames` frames first. A tensor keeps its
    autograd graph and its dtype (half precision is widened to float32); arrays become float32.
    """
    if isinstance(mels, torch.Tensor):
        x = mels.float() if mels.dtype in (torch.float16, torch.bfloat16) else mels
    else:
        x = torch.as_tensor(np.asarray(mels, dtype=np.float32))
    if x.shape[1] < frames:
        x = F.pad(x, (0, 0, 0, frames - x.shape[1]), value=-1.0)
    x = x[:, :frames]
    if time_pool > 1:
        x = F.avg_pool1d(x.transpose(1, 2), time_pool).transpose(1, 2)
    return x[:, None]


# --------------------------------------------------------------------------------------------
# training the world CLAP
# --------------------------------------------------------------------------------------------
def _train_words() -> dict[str, dict[Any, tuple[str, ...]]]:
    try:
        from ..world.captions import _W  # the world's own train-split synonyms

        words = _W["train"]
    except (ImportError, KeyError):
        words = {}
    base = {
        "lead": {"piano": ("piano",), "violin": ("violin",), "acoustic_guitar": ("acoustic guitar",),
                 "electric_guitar": ("electric guitar",), "flute": ("flute",), "trumpet": ("trumpet",)},
        "tempo": {"slow": ("slow",), "fast": ("fast",)},
        "mood": {"happy": ("happy", "cheerful"), "sad": ("sad",)},
        "genre": {g: (g,) for g in ("classical", "electronic", "jazz", "rock", "reggae")},
    }
    out: dict[str, dict[Any, tuple[str, ...]]] = {}
    for concept, values in base.items():
        out[concept] = {v: tuple(dict.fromkeys(b + tuple(words.get(concept, {}).get(v, ())))) for v, b in values.items()}
    return out


def short_texts(attrs: Any, rng: np.random.Generator, words: dict[str, dict[Any, tuple[str, ...]]]) -> tuple[str, dict[str, Any]]:
    """A short alignment-style text about one or two attributes of a clip, and what it states."""
    def w(concept: str) -> str:
        opts = words[concept][getattr(attrs, concept)]
        return opts[int(rng.integers(len(opts)))]

    kind = int(rng.integers(9))
    if kind == 0:
        x = w("lead")
        t = ("a {} song", "a song with {}", "music with {}", "a {} track", "{} music")[int(rng.integers(5))].format(x)
        return t, {"lead": attrs.lead}
    if kind == 1:
        x = w("tempo")
        return ("a {} track", "a {} song", "{} music", "a {} tune")[int(rng.integers(4))].format(x), {"tempo": attrs.tempo}
    if kind == 2:
        x = w("mood")
        return ("a {} track", "a {} song", "{} music")[int(rng.integers(3))].format(x), {"mood": attrs.mood}
    if kind == 3:
        x = w("genre")
        return ("a {} song", "{} music", "a {} track")[int(rng.integers(3))].format(x), {"genre": attrs.genre}
    if kind == 4 and attrs.vocal != "none":
        g = attrs.vocal
        t = (f"This is a music of a {g} vocal singing", f"a song with {g} vocals",
             f"a {'woman' if g == 'female' else 'man'} singing")[int(rng.integers(3))]
        return t, {"vocal": g}
    if kind == 5 and attrs.vocal != "none":
        s = attrs.vocal_style
        t = (f"This is music with {'rap' if s == 'rap' else 'sing'} vocal",
             "a song with rap vocals" if s == "rap" else "a song with sung vocals")[int(rng.integers(2))]
        return t, {"vocal_style": s}
    if kind == 6:
        if attrs.drums:
            return "a song with drums", {"drums": True}
        return "a song without drums", {"drums": False}
    if kind == 7:
        return f"a {w('tempo')} {w('genre')} song with {w('lead')}", {"tempo": attrs.tempo, "genre": attrs.genre,
                                                                      "lead": attrs.lead}
    return f"a {w('mood')} {w('tempo')} song", {"mood": attrs.mood, "tempo": attrs.tempo}


def build_tokenizer(texts: Sequence[str], out_dir: Path, vocab_size: int = 2000):
    """Byte-level BPE (RoBERTa layout: <s>=0, <pad>=1, </s>=2) trained on `texts`, saved in `out_dir`."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=2,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    out_dir.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(out_dir))
    return RobertaTokenizerFast.from_pretrained(str(out_dir), model_max_length=77)


def small_clap_config(vocab_size: int, n_mels: int = 64, frames: int = 64):
    from transformers import ClapAudioConfig, ClapConfig, ClapTextConfig

    audio = ClapAudioConfig(num_mel_bins=n_mels, spec_size=frames, patch_size=8, patch_stride=(8, 8),
                            window_size=4, depths=[2, 2], num_attention_heads=[2, 4],
                            patch_embeds_hidden_size=64, hidden_size=128, projection_dim=128,
                            num_hidden_layers=2, hidden_dropout_prob=0.0, enable_fusion=False)
    text = ClapTextConfig(vocab_size=vocab_size, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=256, max_position_embeddings=80, projection_dim=128,
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=128)


def _consistent(attrs: Any, stated: dict[str, Any]) -> bool:
    return all(getattr(attrs, k) == v for k, v in stated.items())


def train_clap(out_dir: str | Path, dataset: str | Path | None = None, steps: int = 400, seed: int = 0,
               batch_size: int = 64, lr: float = 5e-4, n_clips: int = 2000, eval_clips: int = 240,
               minutes: float | None = None, init: str | Path | None = None,
               aux_weight: float = 1.0) -> dict[str, Any]:
    """Train the world CLAP; returns (and writes to ``eval.json``) its held-out ranking accuracy.

    `dataset` is a ``dataset.npz`` of :mod:`tada.embedded.train` (rendered mels, attributes,
    captions); without it `n_clips` clips are rendered. `init` continues from a saved world
    CLAP (its tokenizer is kept). Besides the contrastive loss, linear heads on the audio
    embedding predict each ground-truth attribute (weight `aux_weight`); they speed up the
    audio tower and are dropped after training.
    """
    from transformers import ClapFeatureExtractor, ClapModel, ClapProcessor

    from ..world.attributes import ClipAttributes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if dataset is not None:
        data = np.load(dataset, allow_pickle=False)
        mels = data["mels"].astype(np.float32)
        attrs = [ClipAttributes.from_dict(json.loads(s)) for s in data["attributes"]]
        captions = [list(row) for row in data["captions"]]
    else:
        from ..world.dataset import make_dataset

        ds = make_dataset(n_clips, seed=seed + 11, split="train")
        mels, attrs, captions = ds.mels.astype(np.float32), ds.attributes, [[c] for c in ds.captions]
    words = _train_words()
    pool = [short_texts(a, rng, words)[0] for a in attrs[:2000] for _ in range(2)]
    corpus = [c for row in captions for c in row] + pool + [t for v in RANKING_TEXTS.values() for t, _ in v]
    if init is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(init))
        model = ClapModel.from_pretrained(str(init))
    else:
        tokenizer = build_tokenizer(corpus, out / "tokenizer_build")
        model = ClapModel(small_clap_config(len(tokenizer)))
    from ..world.attributes import CONCEPT_VALUES

    dim = model.config.projection_dim
    heads = torch.nn.ModuleDict({k: torch.nn.Linear(dim, len(v)) for k, v in CONCEPT_VALUES.items()})
    labels = {k: torch.tensor([list(v).index(getattr(a, k)) for a in attrs]) for k, v in CONCEPT_VALUES.items()}
    opt = torch.optim.AdamW(list(model.parameters()) + list(heads.parameters()), lr=lr, weight_decay=0.01)
    x_all = world_input(mels)
    n = len(attrs)
    t0 = time.time()
    model.train()
    for step in range(int(steps)):
        if minutes is not None and time.time() - t0 > 60 * minutes:
            break
        lr_now = lr * min(1.0, (step + 1) / 30) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for g in opt.param_groups:
            g["lr"] = lr_now
        idx = rng.choice(n, size=batch_size, replace=False)
        texts, stated = [], []
        for i in idx:
            if rng.random() < 0.5:
                row = captions[i]
                texts.append(row[int(rng.integers(len(row)))])
                stated.append(None)
            else:
                t, s = short_texts(attrs[i], rng, words)
                texts.append(t)
                stated.append(s)
        target = torch.zeros(batch_size, batch_size)
        for j, s in enumerate(stated):
            for i, clip in enumerate(idx):
                target[i, j] = float(i == j) if s is None else float(_consistent(attrs[clip], s))
        x = x_all[idx].clone()
        x = torch.roll(x, int(rng.integers(-8, 9)), dims=2) + 0.05 * float(rng.standard_normal())
        tok = tokenizer(texts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        a = F.normalize(_pooled(model.get_audio_features(input_features=x)), dim=-1)
        t = F.normalize(_pooled(model.get_text_features(input_ids=tok["input_ids"],
                                                        attention_mask=tok["attention_mask"])), dim=-1)
        scale = model.logit_scale_a.exp().clamp(max=50.0)
        logits = scale * a @ t.T
        loss = 0.5 * (-(F.log_softmax(logits, 1) * target / target.sum(1, keepdim=True)).sum(1).mean()
                      - (F.log_softmax(logits, 0) * target / target.sum(0, keepdim=True)).sum(0).mean())
        if aux_weight > 0:
            sel = torch.as_tensor(idx)
            aux = torch.stack([F.cross_entropy(h(a * 8.0), labels[k][sel]) for k, h in heads.items()]).mean()
            loss = loss + aux_weight * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 25 == 0:
            log.info("clap step %d loss %.3f (%.0f s)", step, loss.item(), time.time() - t0)
    model.eval()
    fe = ClapFeatureExtractor(feature_size=64, sampling_rate=16000, hop_length=500, fft_window_size=1024,
                              max_length_s=4, frequency_min=30, frequency_max=8000, truncation="rand_trunc",
                              padding="repeatpad")
    model.save_pretrained(str(out))
    ClapProcessor(feature_extractor=fe, tokenizer=tokenizer).save_pretrained(str(out))
    meta = {"features": "world_log_mel", "time_pool": 2, "max_text_length": 77, "steps": step + 1,
            "init": None if init is None else str(init), "aux_weight": aux_weight,
            "train_seconds": round(time.time() - t0, 1), "train_clips": n, "seed": seed}
    (out / META).write_text(json.dumps(meta, indent=2))
    import shutil

    shutil.rmtree(out / "tokenizer_build", ignore_errors=True)
    scorer = ClapScorer(out)
    result = {**meta, **ranking_accuracy(scorer, n_clips=eval_clips, seed=seed + 1000)}
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    return result


def heldout_clips(n: int, seed: int) -> tuple[np.ndarray, list[Any]]:
    """Rendered clips of the world's held-out split (mels, attributes)."""
    from ..world.dataset import make_dataset

    ds = make_dataset(n, seed=seed, split="heldout")
    return np.asarray(ds.mels, dtype=np.float32), list(ds.attributes)


def ranking_accuracy(scorer: Scorer, n_clips: int = 240, seed: int = 1000,
                     clips: tuple[np.ndarray, list[Any]] | None = None) -> dict[str, Any]:
    """Per concept, the fraction of held-out rendered clips whose own concept text ranks first."""
    from ..models.base import Generation

    mels, attrs = clips if clips is not None else heldout_clips(n_clips, seed)
    gen = Generation(None, 16000, [""] * len(mels), list(range(len(mels))), features=mels,
                     decode=lambda f: np.zeros((len(f), 1, 1), np.float32))
    out: dict[str, Any] = {"clips": len(mels)}
    accs = []
    for concept, pairs in RANKING_TEXTS.items():
        keep = [i for i, a in enumerate(attrs) if concept not in ("vocal", "vocal_style") or a.vocal != "none"]
        texts = [t for t, _ in pairs]
        values = [v for _, v in pairs]
        sub = Generation(None, 16000, [""] * len(keep), keep, features=mels[keep],
                         decode=gen._decode)  # type: ignore[arg-type]
        sim = scorer.similarity(sub, texts)
        truth = np.array([values.index(getattr(attrs[i], concept)) for i in keep])
        acc = float((sim.argmax(1) == truth).mean())
        out[f"rank_acc_{concept}"] = acc
        accs.append(acc)
    out["rank_acc_mean"] = float(np.mean(accs))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tada.scorers.clap",
                                     description="Train or check the world CLAP scorer.")
    parser.add_argument("--train", action="store_true", help="train a world CLAP into --out")
    parser.add_argument("--out", required=True, help="weights directory")
    parser.add_argument("--data", default=None, help="dataset.npz of the embedded training run (else render)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", default=None, help="continue from a saved world CLAP")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.train:
        res = train_clap(args.out, dataset=args.data, steps=args.steps, seed=args.seed, minutes=args.minutes,
                         init=args.init)
    else:
        res = ranking_accuracy(ClapScorer(args.out))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
