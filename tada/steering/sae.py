"""BatchTopK sparse autoencoder on cross-attention outputs, its trainer and its metrics.

Model (inputs are first multiplied by a fixed ``input_scale`` so that E‖x‖² = d_in)::

    pre = ReLU(W_enc (x − b_dec) + b_enc)
    z   = BatchTopK(pre)          # keep the k·B largest activations of the whole batch
    x̂   = W_dec z + b_dec         # decoder columns (rows of ``W_dec``) have unit norm

Training minimises mean((x̂ − x)²) + aux_coef · mean((ê − e)²), where e = x − x̂ (a constant
target) and ê is e reconstructed from the aux_k largest pre-activations of the dead features
(no activation for ``dead_after`` training samples). After every step the gradient component
parallel to each decoder column has been removed before the update and the columns are
renormalised after it.

At inference BatchTopK depends on the batch; :meth:`BatchTopKSAE.encode` offers
``mode="topk"`` (k per sample, the default), ``"threshold"`` (the running mean of the smallest
kept activation during training) and ``"batchtopk"``.

The trainer takes any iterable of activation batches ``(n, d_in)`` (e.g. streamed from a zarr
store), so the training set never has to fit in memory.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

SAE_FORMAT = "tada.sae"


@dataclass
class SAEConfig:
    """Hyper-parameters (the config's ``steering.sae`` block)."""

    expansion: int = 4
    k: int = 24
    aux_k: int = 256
    aux_coef: float = 1.0 / 32
    lr: float = 3e-4
    epochs: int = 5
    batch_size: int = 1024
    seed: int = 0
    #: a feature that has not fired for this many training samples is dead
    dead_after: int = 20000
    #: a feature firing on more than this fraction of samples is dense ("always on")
    dense_threshold: float = 0.5

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "SAEConfig":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in (d or {}).items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BatchTopKSAE(nn.Module):
    """BatchTopK SAE with `n_features` features on inputs of width `d_in`."""

    def __init__(self, d_in: int, n_features: int, k: int, seed: int = 0):
        super().__init__()
        if k < 1 or k > n_features:
            raise ValueError(f"k must be in 1..{n_features}, got {k}")
        gen = torch.Generator().manual_seed(int(seed))
        w = torch.randn(n_features, d_in, generator=gen)
        w = w / w.norm(dim=1, keepdim=True)
        self.d_in, self.n_features, self.k = int(d_in), int(n_features), int(k)
        self.W_dec = nn.Parameter(w.clone())
        self.W_enc = nn.Parameter(w.t().clone())
        self.b_enc = nn.Parameter(torch.zeros(n_features))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("input_scale", torch.tensor(1.0))
        self.register_buffer("threshold", torch.tensor(0.0))
        self.register_buffer("since_fired", torch.zeros(n_features, dtype=torch.long))

    # ----- forward ----------------------------------------------------------------------------
    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.W_enc.dtype) * self.input_scale
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    @staticmethod
    def batch_topk(acts: torch.Tensor, k: int) -> torch.Tensor:
        """Keep the k·B largest entries of the (B, F) batch, zero the rest."""
        flat = acts.flatten()
        n = min(k * acts.shape[0], flat.numel())
        vals, idx = flat.topk(n, sorted=False)
        return torch.zeros_like(flat).scatter_(0, idx, vals).view_as(acts)

    @staticmethod
    def topk(acts: torch.Tensor, k: int) -> torch.Tensor:
        vals, idx = acts.topk(min(k, acts.shape[-1]), dim=-1, sorted=False)
        return torch.zeros_like(acts).scatter_(-1, idx, vals)

    def encode(self, x: torch.Tensor, mode: str = "topk") -> torch.Tensor:
        """Feature activations (B, F) of inputs (B, d_in)."""
        acts = self.pre_activations(x)
        if mode == "topk":
            return self.topk(acts, self.k)
        if mode == "batchtopk":
            return self.batch_topk(acts, self.k)
        if mode == "threshold":
            return acts * (acts > self.threshold)
        raise ValueError(f"unknown encode mode '{mode}': use topk, batchtopk or threshold")

    def decode_scaled(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_dec

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction in the input's units."""
        return self.decode_scaled(z) / self.input_scale

    def forward(self, x: torch.Tensor, mode: str = "topk") -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x, mode)
        return self.decode(z), z

    # ----- constraints ---------------------------------------------------------------------------
    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        if self.W_dec.grad is None:
            return
        w = self.W_dec / self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)
        self.W_dec.grad -= (self.W_dec.grad * w).sum(dim=1, keepdim=True) * w

    def decoder_columns(self, features: Iterable[int] | None = None) -> torch.Tensor:
        """Unit-norm decoder directions (in the input space), one row per feature."""
        w = self.W_dec.detach().float()
        w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return w if features is None else w[torch.as_tensor(list(features), dtype=torch.long)]

    # ----- files ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> None:
        from .vectors import save_tensors

        tensors = {k: v.detach().float().cpu() for k, v in self.state_dict().items() if k != "since_fired"}
        save_tensors(path, tensors, {"format": SAE_FORMAT, "d_in": self.d_in, "n_features": self.n_features,
                                     "k": self.k, **(meta or {})})

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple["BatchTopKSAE", dict]:
        from .vectors import load_tensors

        tensors, meta = load_tensors(path)
        if meta.get("format") != SAE_FORMAT:
            raise ValueError(f"{path}: not an SAE file (format {meta.get('format')!r})")
        sae = cls(int(meta["d_in"]), int(meta["n_features"]), int(meta["k"]))
        sae.load_state_dict({**tensors, "since_fired": sae.since_fired}, strict=True)
        return sae.to(device).eval(), meta


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
@dataclass
class TrainHistory:
    steps: int = 0
    samples: int = 0
    loss: list[float] = field(default_factory=list)
    mse: list[float] = field(default_factory=list)
    aux: list[float] = field(default_factory=list)
    dead_fraction: list[float] = field(default_factory=list)
    seconds: float = 0.0


class SAETrainer:
    """Adam training of a :class:`BatchTopKSAE` on any iterable of activation batches."""

    def __init__(self, sae: BatchTopKSAE, config: SAEConfig, device: str | torch.device = "cpu"):
        self.sae = sae.to(device)
        self.cfg = config
        self.device = torch.device(device)
        self.opt = torch.optim.Adam(self.sae.parameters(), lr=config.lr, betas=(0.9, 0.999))
        self.history = TrainHistory()
        self._initialised = False

    @torch.no_grad()
    def _initialise(self, x: torch.Tensor) -> None:
        """Scale inputs to E‖x‖² = d_in and start b_dec at the (scaled) mean of the first batch."""
        sq = x.pow(2).sum(dim=1).mean().clamp_min(1e-12)
        self.sae.input_scale.fill_(math.sqrt(self.sae.d_in / sq.item()))
        self.sae.b_dec.copy_(x.mean(dim=0) * self.sae.input_scale)
        self._initialised = True

    def step(self, x: torch.Tensor) -> dict[str, float]:
        sae, cfg = self.sae, self.cfg
        x = torch.as_tensor(x).to(self.device, torch.float32)
        if not self._initialised:
            self._initialise(x)
        xs = x * sae.input_scale
        acts = torch.relu((xs - sae.b_dec) @ sae.W_enc + sae.b_enc)
        z = sae.batch_topk(acts, sae.k)
        x_hat = sae.decode_scaled(z)
        mse = (x_hat - xs).pow(2).mean()
        fired = (z > 0).any(dim=0)
        with torch.no_grad():
            sae.since_fired.add_(x.shape[0])
            sae.since_fired[fired] = 0
            kept = z[z > 0]
            if kept.numel():
                lo = kept.min()
                t = sae.threshold
                t.copy_(lo if self.history.steps == 0 else 0.99 * t + 0.01 * lo)
        dead = sae.since_fired >= cfg.dead_after
        aux = torch.zeros((), device=self.device)
        n_dead = int(dead.sum())
        if n_dead and cfg.aux_k > 0 and cfg.aux_coef > 0:
            residual = (xs - x_hat).detach()
            dead_acts = acts[:, dead]
            vals, idx = dead_acts.topk(min(cfg.aux_k, n_dead), dim=1, sorted=False)
            z_aux = torch.zeros_like(dead_acts).scatter_(1, idx, vals)
            aux = cfg.aux_coef * (z_aux @ sae.W_dec[dead] - residual).pow(2).mean()
        loss = mse + aux
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        sae.remove_parallel_gradient()
        self.opt.step()
        sae.normalize_decoder()
        h = self.history
        h.steps += 1
        h.samples += x.shape[0]
        out = {"loss": loss.item(), "mse": mse.item(), "aux": aux.item(), "dead_fraction": n_dead / sae.n_features}
        for key in ("loss", "mse", "aux", "dead_fraction"):
            getattr(h, key).append(out[key])
        return out

    def fit(self, batches: Iterable[Any], progress: Callable[[dict[str, float]], None] | None = None
            ) -> TrainHistory:
        """Train on every batch of `batches` once (pass several epochs as one chained iterable)."""
        t0 = time.perf_counter()
        self.sae.train()
        for batch in batches:
            x = torch.as_tensor(np.asarray(batch) if not torch.is_tensor(batch) else batch)
            if x.ndim != 2 or x.shape[1] != self.sae.d_in:
                raise ValueError(f"expected batches of shape (n, {self.sae.d_in}), got {tuple(x.shape)}")
            if x.shape[0] == 0:
                continue
            stats = self.step(x)
            if progress is not None:
                progress(stats)
        self.sae.eval()
        self.history.seconds += time.perf_counter() - t0
        return self.history


def epochs(make_batches: Callable[[int], Iterable[Any]], n: int) -> Iterator[Any]:
    """Chain `n` passes of a batch source; ``make_batches(epoch)`` gives one pass."""
    for e in range(int(n)):
        yield from make_batches(e)


def train_sae(make_batches: Callable[[int], Iterable[Any]], d_in: int, config: SAEConfig,
              device: str | torch.device = "cpu",
              progress: Callable[[dict[str, float]], None] | None = None) -> tuple[BatchTopKSAE, TrainHistory]:
    """Build and train an SAE of ``expansion · d_in`` features for ``config.epochs`` passes."""
    torch.manual_seed(config.seed)
    sae = BatchTopKSAE(d_in, config.expansion * d_in, config.k, seed=config.seed)
    trainer = SAETrainer(sae, config, device)
    history = trainer.fit(epochs(make_batches, config.epochs), progress=progress)
    return trainer.sae, history


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(sae: BatchTopKSAE, batches: Iterable[Any], mode: str = "topk",
             dense_threshold: float = 0.5) -> dict[str, float]:
    """FVU, dead / dense feature fractions and mean L0 over one pass of `batches`.

    FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖². A feature is dead when it never fires in the pass and dense
    when it fires on more than `dense_threshold` of the samples.
    """
    device = sae.W_enc.device
    n, sum_x, sum_sq, sse, l0 = 0, None, 0.0, 0.0, 0.0
    fires = torch.zeros(sae.n_features, dtype=torch.float64, device=device)
    for batch in batches:
        x = torch.as_tensor(np.asarray(batch) if not torch.is_tensor(batch) else batch).to(device, torch.float32)
        if x.shape[0] == 0:
            continue
        x_hat, z = sae(x, mode=mode)
        xd = x.double()
        sse += float((x_hat.double() - xd).pow(2).sum())
        sum_sq += float(xd.pow(2).sum())
        sum_x = xd.sum(dim=0) if sum_x is None else sum_x + xd.sum(dim=0)
        active = z > 0
        fires += active.sum(dim=0).double()
        l0 += float(active.sum())
        n += x.shape[0]
    if n == 0:
        raise ValueError("no samples to evaluate")
    total_var = sum_sq - float(sum_x.pow(2).sum()) / n
    freq = fires / n
    return {
        "samples": n,
        "fvu": sse / max(total_var, 1e-30),
        "dead_fraction": float((fires == 0).double().mean()),
        "dense_fraction": float((freq > dense_threshold).double().mean()),
        "mean_l0": l0 / n,
    }


# --------------------------------------------------------------------------------------------
# batches from activation stores
# --------------------------------------------------------------------------------------------
def shuffled_batches(sources: list[Callable[[], Iterable[Any]]], batch_size: int, seed: int,
                     buffer_batches: int = 8) -> Iterator[np.ndarray]:
    """Mix several streams of activation blocks into shuffled batches of `batch_size`.

    Each source is a callable returning an iterable of (n, d) blocks. Blocks are drawn from a
    random live source into a buffer of about ``buffer_batches · batch_size`` rows, which is
    shuffled and emitted in batches; memory stays bounded by the buffer.
    """
    rng = np.random.default_rng(seed)
    iters = [iter(make()) for make in sources]
    buffer: list[np.ndarray] = []
    buffered = 0
    limit = max(1, buffer_batches) * batch_size
    while iters:
        i = int(rng.integers(len(iters)))
        try:
            block = np.asarray(next(iters[i]), dtype=np.float32)
        except StopIteration:
            iters.pop(i)
            continue
        buffer.append(block.reshape(-1, block.shape[-1]))
        buffered += len(buffer[-1])
        if buffered >= limit:
            data = np.concatenate(buffer)
            data = data[rng.permutation(len(data))]
            n_out = (len(data) // batch_size) * batch_size
            for j in range(0, n_out, batch_size):
                yield data[j:j + batch_size]
            buffer, buffered = [data[n_out:]], len(data) - n_out
    if buffered:
        data = np.concatenate(buffer)
        data = data[rng.permutation(len(data))]
        for j in range(0, len(data), batch_size):
            yield data[j:j + batch_size]


def split_samples(n_samples: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, held-out) sample indices; at least one sample on each side when n > 1."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(int(n_samples))
    n_out = int(round(holdout * n_samples))
    n_out = min(max(n_out, 1 if holdout > 0 and n_samples > 1 else 0), max(n_samples - 1, 0))
    return np.sort(order[n_out:]), np.sort(order[:n_out])


def train_layer_sae(stores: list[Any], layer: int, config: SAEConfig, *, holdout: float = 0.1,
                    device: str | torch.device = "cpu",
                    progress: Callable[[dict[str, float]], None] | None = None
                    ) -> tuple[BatchTopKSAE, TrainHistory, dict[str, float]]:
    """Train the SAE of one layer on the per-frame activations of several stores.

    Activations are streamed with each store's ``iter_frames`` (see :mod:`tada.cache`); a random
    `holdout` fraction of every store's samples is kept out of training and gives the reported
    metrics (FVU, dead and dense fractions, L0).
    """
    if not stores:
        raise ValueError("no activation stores to train on")
    for store in stores:
        if getattr(store, "frames", None) is None:
            raise ValueError(f"{getattr(store, 'path', store)} has no per-frame activations: SAE training "
                             "needs them (set cache.frame_steps in the config)")
    splits = [split_samples(s.n_samples, holdout, config.seed + i) for i, s in enumerate(stores)]
    bs = config.batch_size

    def make(epoch: int, part: int = 0, shuffle: bool = True):
        sources = [(lambda s=s, rows=rows[part], i=i: s.iter_frames(layer, bs, config.seed + 7919 * epoch + i,
                                                                    samples=rows, shuffle=shuffle))
                   for i, (s, rows) in enumerate(zip(stores, splits)) if len(rows[part])]
        return shuffled_batches(sources, bs, seed=config.seed + epoch)

    width = int(stores[0].layer_widths[layer])
    sae, history = train_sae(make, width, config, device=device, progress=progress)
    has_holdout = all(len(rows[1]) for rows in splits)
    metrics = evaluate(sae, make(0, part=1 if has_holdout else 0, shuffle=False),
                       dense_threshold=config.dense_threshold)
    metrics["evaluated_on"] = "held-out samples" if has_holdout else "training samples"
    return sae, history, metrics
