"""Attribution patching: every layer's patching effect from one backward pass.

Activation patching (:mod:`tada.localize`) measures, for a counterfactual pair (target p+,
source p-) and a seed, ``s(patched_l) - s(source)`` with one generation per layer. Attribution
patching (Nanda 2023; Syed et al. 2023; Kramár et al. 2024) estimates all of them to first
order from the source run alone. Write the source run with layer l's keys/values moved a
fraction ε of the way to the target's,

    kv_l,t,b(ε) = kv_l,t,b(source) + ε_l,t,b,w · (kv_l,t,b(target) - kv_l,t,b(source)),

one scalar ε per layer l, sampler step t, CFG branch b and side w ∈ {keys, values} (ε = 1 on
every step, branch and side of layer l is exactly patching layer l). At ε = 0,

    s(patched_l) - s(source) ≈ Σ_t Σ_b Σ_w ∂s/∂ε_l,t,b,w
                             = Σ_t Σ_b Σ_w Σ_tokens ∇_{kv_l,t,b,w} s(x_source) · (kv(target) - kv(source)),

so one target run (caching its keys and values), one source run with gradients enabled through
the whole sampler, decoder and scorer, and one backward pass of s give the estimate for every
layer at once. The impact is normalised by the same denominator as patching,
``I(l) = estimate_l / (s(target) - s(source))``; the all-layers row is Σ_l estimate_l. The
per-(step, branch) terms ∂s/∂ε (keys and values apart) are kept.

The ε are the only tensors that require gradients (the model's and scorer's weights are frozen
for the run), and :class:`InterpolateKV` applies them through the model's own attention maths.
Memory stays at about one sampler step's activations: each denoiser call runs under
``torch.utils.checkpoint`` (reentrant form: its activations are recomputed once during the
backward pass, with the intervention step counter pinned to that call's step; the gradients are
then read from ``ε.grad`` after ``backward()``).

QK fix (``qk_fix=True``, after AtP*): the softmax makes the layer output nonlinear in the keys,
and a saturated attention pattern makes the linear estimate of a key change poor. With the fix
the layer output itself is interpolated, ``o_l(ε) = o_l(source) + ε (o_l(q_source, kv_target) -
o_l(source))``, where the patched output is computed exactly (a second attention call with the
target's keys and values); only the rest of the network is linearised. Per-side (keys/values)
terms are then not separated (they are reported as values).

Differentiability: the embedded model's Euler sampler and its log-mel output are; diffusers
pipelines are run with their ``__call__`` unwrapped from ``torch.no_grad`` (sampler, scheduler
step and VAE decoder then carry gradients). Scorers: a scorer with a ``score_tensor(clips, text)``
method, or the world CLAP (:class:`~tada.scorers.clap.ClapScorer` on world log-mels, from the
embedded model's features or from audio through a torch log-mel; audio at another rate is
resampled by Fourier interpolation). Anything else (the world classifiers' numpy descriptors,
the LAION CLAP's numpy feature extractor, a backend without a differentiable sampler) raises
:class:`NotDifferentiableError` naming the part.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .models.interventions import Capture, Intervention, _as_tuple, apply_interventions
from .scorers.clap import world_input


class NotDifferentiableError(RuntimeError):
    """A part of the generation or scoring path carries no gradient."""


@dataclass
class TensorClips:
    """Generated clips as tensors: log-mel `features` (B, frames, mels) or `audio` (B, C, N)."""

    features: torch.Tensor | None
    audio: torch.Tensor | None
    sample_rate: int


# --------------------------------------------------------------------------------------------
# the intervention
# --------------------------------------------------------------------------------------------
class InterpolateKV(Intervention):
    """kv ← kv + ε·(kv_cached − kv) on `layers` (every step, both CFG branches).

    `source` is a :class:`Capture` made with ``keys_values=True`` of a run with the same seeds,
    steps and batch layout. ε holds one scalar per (step, layer, side, branch, prompt), created
    on first use with value `alpha`; with ``requires_grad=True`` they are leaves to
    differentiate against (``eps[(step, layer, side)]`` of shape (branches, prompts)). With
    ``alpha=1`` it is :class:`~tada.models.interventions.PatchKV`. With ``qk_fix=True`` the
    layer output is interpolated instead, toward the exact output with the cached keys/values.
    """

    needs_kv = True

    def __init__(self, source: Capture, layers: Sequence[int] | int | None = None, *, alpha: float = 0.0,
                 requires_grad: bool = False, qk_fix: bool = False):
        if not source.needs_kv:
            raise ValueError("InterpolateKV needs a Capture made with keys_values=True")
        self.source = source
        self.layers = _as_tuple(layers)
        self.alpha = float(alpha)
        self.requires_grad = bool(requires_grad)
        self.qk_fix = bool(qk_fix)
        self.eps: dict[tuple[int, int, str], torch.Tensor] = {}
        self._exact = False  # True while the QK fix recomputes a layer with the cached keys/values
        self._hooks: list[Any] = []

    def epsilon(self, step: int, layer: int, side: str, nb: int, b: int, like: torch.Tensor) -> torch.Tensor:
        key = (step, layer, side)
        if key not in self.eps:
            e = torch.full((nb, b), self.alpha, dtype=like.dtype, device=like.device)
            self.eps[key] = e.requires_grad_(True) if self.requires_grad else e
        return self.eps[key]

    def _cached(self, state, layer, which, tensor):
        key = (state.step, layer)
        if key not in self.source.kv:
            raise KeyError(f"no cached keys/values for step {state.step}, layer {layer}: the cached "
                           "run must use the same number of steps and capture this layer")
        cached = self.source.kv[key][0 if which == "k" else 1]
        if cached.shape != tensor.shape:
            raise ValueError(f"cannot interpolate layer {layer}: cached {which} has shape "
                             f"{tuple(cached.shape)} but the run has {tuple(tensor.shape)}; run the "
                             "target and source batches with the same prompts count and token count")
        return cached.to(tensor.device, tensor.dtype)

    def on_kv(self, state, layer, which, tensor):
        if self.qk_fix:
            return self._cached(state, layer, which, tensor) if self._exact else tensor
        nb = len(state.branches)
        e = self.epsilon(state.step, layer, which, nb, tensor.shape[0] // nb, tensor)
        e = e.reshape(tensor.shape[0], *[1] * (tensor.ndim - 1))
        return tensor + e * (self._cached(state, layer, which, tensor) - tensor)

    def on_mask(self, state, layer, mask):
        cached = self.source.masks.get((state.step, layer))
        if cached is None and mask is None:
            return None
        if cached is None or mask is None or cached.shape != mask.shape or not torch.equal(cached.to(mask.device), mask):
            raise NotDifferentiableError(
                f"layer {layer}: the target and source runs have different attention masks (padding of "
                "the text encoder's tokens); patching swaps the mask, a discrete change with no "
                "gradient, so attribution needs backends whose masks do not depend on the prompt")
        return mask

    # ----- QK fix: interpolate the layer output toward its exact patched value ------------------
    def begin(self, model: Any) -> None:
        self.remove_hooks()
        if not self.qk_fix:
            return
        for layer in model.layers:
            if self.applies_to(layer.index):
                self._hooks.append(layer.module.register_forward_hook(self._output_hook(model, layer.index),
                                                                      with_kwargs=True))

    def remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def _output_hook(self, model, index):
        def hook(module, args, kwargs, output):
            states = model.__dict__.get("_intervention_states", [])
            if self._exact or not states or not isinstance(output, torch.Tensor):
                return output
            self._exact = True
            try:
                exact = module.forward(*args, **kwargs)
            finally:
                self._exact = False
            step = states[-1].step
            nb = len(model.run_branches)
            e = self.epsilon(step, index, "o", nb, output.shape[0] // nb, output)
            return output + e.reshape(output.shape[0], *[1] * (output.ndim - 1)) * (exact - output)

        return hook


# --------------------------------------------------------------------------------------------
# differentiable generation
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _frozen(*modules: Any) -> Iterator[None]:
    """Weights not requiring gradients for the block (so backward computes only ∂s/∂ε)."""
    params = [p for m in modules if isinstance(m, torch.nn.Module) for p in m.parameters()]
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, r in zip(params, before):
            p.requires_grad_(r)


@contextlib.contextmanager
def _checkpointed(model: Any) -> Iterator[None]:
    """Run every denoiser call under ``torch.utils.checkpoint`` (activations recomputed in the
    backward pass), with the intervention step counters pinned to the call's step."""
    from torch.utils.checkpoint import checkpoint

    net = model.denoiser()
    own = net.__dict__.get("forward")
    original = net.forward

    def forward(*args, **kwargs):
        states = list(model.__dict__.get("_intervention_states", []))
        steps = [s.step for s in states]

        def run(_anchor, *a):
            for s, step in zip(states, steps):
                s.step = step
            return original(*a, **kwargs)

        # the reentrant form recomputes each call once in the backward pass (the non-reentrant
        # one pays a hook per saved tensor); the anchor makes every call's output require grad
        # (the ε it uses are not inputs), so the backward pass reaches step 0
        return checkpoint(run, anchor, *args, use_reentrant=True)

    anchor = torch.zeros((), requires_grad=True)

    net.forward = forward
    try:
        yield
    finally:
        if own is None:
            del net.forward
        else:
            net.forward = own


def _model_modules(model: Any) -> list[torch.nn.Module]:
    mods = [model.denoiser()]
    mods += [m for m in getattr(getattr(model, "pipe", None), "components", {}).values()
             if isinstance(m, torch.nn.Module)]
    return mods


@contextlib.contextmanager
def generation_session(model: Any, interventions: Sequence[Intervention] = (), *, steps: int | None = None,
                       guidance: float | None = None, grad: bool = False,
                       checkpoint: bool = True) -> Iterator[Any]:
    """Context in which ``run(prompts, seeds, duration=..., text_length=...)`` generates
    :class:`TensorClips` like :meth:`~tada.models.base.SteerableModel.generate`, with the
    interventions installed, the weights frozen and, when `grad`, gradients flowing from the
    output to any tensor the interventions use. Backward passes belong inside the block: the
    checkpointed denoiser calls are recomputed then, with the interventions still installed."""
    steps = int(steps or model.default_steps)
    guidance = float(model.default_guidance if guidance is None else guidance)
    forward = _backend_forward(model)
    ctx_ckpt = _checkpointed(model) if grad and checkpoint else contextlib.nullcontext()
    needs_grad = grad and any(isinstance(iv, InterpolateKV) and iv.requires_grad for iv in interventions)

    def run(prompts: Sequence[str], seeds: Sequence[int], *, duration: float | None = None,
            text_length: int | None = None) -> TensorClips:
        prompts, seeds = list(prompts), [int(s) for s in seeds]
        if len(prompts) != len(seeds) or not prompts:
            raise ValueError(f"got {len(prompts)} prompts and {len(seeds)} seeds")
        model.run_branches = model.cfg_branches(guidance)
        model.run_guidance, model.run_text_length = guidance, text_length  # as generate() sets them
        sessions = list(model.__dict__.get("_intervention_states", []))
        for state in sessions:
            state.start(total_steps=steps)
        clips = forward(model, prompts, seeds, steps=steps, guidance=guidance,
                        duration=float(duration or model.default_duration), text_length=text_length)
        for state in sessions:
            state.check_kv_hooks()
        out = clips.features if clips.features is not None else clips.audio
        if needs_grad and not out.requires_grad:
            raise NotDifferentiableError(f"the {model.backend} backend's sampler or decoder returned an output "
                                         "that carries no gradient (a part of it runs under torch.no_grad)")
        return clips

    try:
        with _frozen(*_model_modules(model)), torch.set_grad_enabled(grad), ctx_ckpt, \
                apply_interventions(model, interventions):
            yield run
    finally:
        for iv in interventions:
            if isinstance(iv, InterpolateKV):
                iv.remove_hooks()


def generate_tensor(model: Any, prompts: Sequence[str], seeds: Sequence[int], *,
                    interventions: Sequence[Intervention] = (), steps: int | None = None,
                    guidance: float | None = None, duration: float | None = None,
                    text_length: int | None = None) -> TensorClips:
    """Tensor clips of one generation without gradients (see :func:`generation_session`)."""
    with generation_session(model, interventions, steps=steps, guidance=guidance) as run:
        return run(prompts, seeds, duration=duration, text_length=text_length)


def _backend_forward(model: Any):
    from .models._diffusers import DiffusersModel
    from .models.embedded import EmbeddedModel

    if isinstance(model, EmbeddedModel):
        return _embedded_forward
    if isinstance(model, DiffusersModel):
        return _diffusers_forward
    raise NotDifferentiableError(f"backend {getattr(model, 'backend', type(model).__name__)!r}: its sampler "
                                 "has no differentiable path here (supported: embedded and diffusers backends)")


def _embedded_forward(model, prompts, seeds, *, steps, guidance, duration, text_length) -> TensorClips:
    from .embedded.model import euler_sample
    from .models.base import seeded_noise

    cond = model.encode_prompts(prompts, text_length=text_length)
    uncond = model.encode_prompts([""] * len(prompts), negative=True, text_length=text_length)
    noise = seeded_noise(seeds, (model.frames_for(duration), model.config.n_mels), model.device, model.dtype)
    # euler_sample is decorated with torch.no_grad: its undecorated body keeps the graph
    mels = inspect.unwrap(euler_sample)(model.network, cond, uncond, noise, steps, guidance,
                                        model.config.time_shift)
    n_keep = int(round(duration * model.config.frames_per_second))
    mels = mels[:, :n_keep]
    if mels.dtype in (torch.float16, torch.bfloat16):
        mels = mels.float()
    return TensorClips(features=model.config.from_network(mels), audio=None, sample_rate=model.sample_rate)


def _diffusers_forward(model, prompts, seeds, *, steps, guidance, duration, text_length) -> TensorClips:
    pipe = model.pipe
    cls = type(pipe)
    grad_cls = type(cls.__name__, (cls,), {"__call__": inspect.unwrap(cls.__call__), "__module__": cls.__module__})
    pipe.__class__ = grad_cls  # this instance only: its __call__ without the torch.no_grad decorator
    try:
        pipe.set_progress_bar_config(disable=True)
        audio, _ = model._call_pipeline(prompts, seeds, steps=steps, guidance=guidance, duration=duration,
                                        negative_prompts=None, text_length=text_length)
    except RuntimeError as err:
        if "inference" in str(err).lower() or "grad" in str(err).lower():
            raise NotDifferentiableError(f"the {model.backend} pipeline is not differentiable here: {err}") from err
        raise
    finally:
        pipe.__class__ = cls
    if not isinstance(audio, torch.Tensor):
        raise NotDifferentiableError(f"the {model.backend} decoder returns {type(audio).__name__}, not a tensor")
    if audio.ndim == 2:
        audio = audio[:, None]
    return TensorClips(features=None, audio=audio, sample_rate=model.sample_rate)


# --------------------------------------------------------------------------------------------
# differentiable scores
# --------------------------------------------------------------------------------------------
def score_tensor(scorer: Any, clips: TensorClips, text: str) -> torch.Tensor:
    """s(x) of each clip as a tensor (B,) connected to the generation's graph."""
    own = getattr(scorer, "score_tensor", None)
    if callable(own):
        return own(clips, text)
    from .scorers.clap import ClapScorer

    if isinstance(scorer, ClapScorer):
        return _clap_score(scorer, clips, text)
    raise NotDifferentiableError(
        f"scorer {getattr(scorer, 'kind', type(scorer).__name__)!r} has no differentiable path (the world "
        "scorer runs numpy descriptors and classifiers); use the CLAP scorer or give the scorer a "
        "score_tensor(clips, text) method")


def _clap_score(scorer: Any, clips: TensorClips, text: str) -> torch.Tensor:
    from .scorers.clap import _pooled

    if not scorer.world:
        raise NotDifferentiableError(
            f"the CLAP scorer at '{scorer.path}' reads audio through the LAION ClapFeatureExtractor, "
            "which runs in numpy; attribution needs the world CLAP (world log-mel input)")
    if clips.features is not None:
        mels = clips.features
    else:
        mels = torch_log_mel(clips.audio.mean(dim=1) if clips.audio.ndim == 3 else clips.audio, clips.sample_rate)
    x = world_input(mels, int(scorer.meta.get("time_pool", 2))).to(scorer.device)
    x = x.to(next(scorer.model.parameters()).dtype)
    with _frozen(scorer.model), _explicit_batch_norm(scorer.model):
        a = _pooled(scorer.model.get_audio_features(input_features=x))
        a = F.normalize(a if a.dtype == torch.float64 else a.float(), dim=-1)
    t = scorer.embed_texts([text]).to(a.device, a.dtype)
    return (a @ t.T)[:, 0]


@contextlib.contextmanager
def _explicit_batch_norm(module: torch.nn.Module) -> Iterator[None]:
    """Evaluate the eval-mode batch norms of `module` as the explicit affine map
    ``(x - mean) / sqrt(var + eps) * weight + bias``: torch's CPU batch-norm backward gives
    wrong input gradients for some non-contiguous gradient layouts (the CLAP audio encoder
    transposes around its ``batch_norm``), while the elementwise form differentiates exactly."""
    patched = []
    for bn in module.modules():
        if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm) and not bn.training \
                and bn.running_mean is not None:
            def forward(x, bn=bn):
                shape = (1, -1) + (1,) * (x.ndim - 2)
                scale = (bn.running_var + bn.eps).rsqrt()
                if bn.weight is not None:
                    scale = scale * bn.weight
                y = (x - bn.running_mean.reshape(shape)) * scale.reshape(shape)
                return y + bn.bias.reshape(shape) if bn.bias is not None else y

            bn.forward = forward
            patched.append(bn)
    try:
        yield
    finally:
        for bn in patched:
            del bn.forward


def fourier_resample(y: torch.Tensor, sr: int, target: int) -> torch.Tensor:
    """Band-limited resampling of (..., N) by zero-padding or truncating the spectrum."""
    if int(sr) == int(target):
        return y
    n = y.shape[-1]
    m = max(1, int(round(n * target / sr)))
    spec = torch.fft.rfft(y, dim=-1)
    bins = m // 2 + 1
    spec = spec[..., :bins] if spec.shape[-1] >= bins else F.pad(spec, (0, bins - spec.shape[-1]))
    return torch.fft.irfft(spec, n=m, dim=-1) * (m / n)


def torch_log_mel(audio: torch.Tensor, sr: int) -> torch.Tensor:
    """Torch twin of :func:`tada.world.features.log_mel` for a batch of mono clips (B, N):
    normalised log-mels (B, frames, n_mels), differentiable in the audio."""
    from .world import features as wf

    y = fourier_resample(audio, int(sr), wf.SR)
    frames = y.shape[-1] // wf.HOP
    pad = F.pad(y, (wf.N_FFT // 2, wf.N_FFT // 2))
    window = torch.as_tensor(wf._window(wf.N_FFT), dtype=y.dtype, device=y.device)
    spec = torch.stft(pad, wf.N_FFT, wf.HOP, window=window, center=False, return_complex=True)
    power = (spec.real ** 2 + spec.imag ** 2).transpose(1, 2)[:, :frames]
    filters = torch.as_tensor(wf.mel_filters(wf.SR, wf.N_FFT, wf.N_MELS, wf.FMIN, wf.FMAX), dtype=y.dtype,
                              device=y.device)
    db = 10.0 * torch.log10((power @ filters.T).clamp_min(1e-10))
    return (2.0 * (db - wf.DB_MIN) / (wf.DB_MAX - wf.DB_MIN) - 1.0).clamp(-1.0, 1.0)


# --------------------------------------------------------------------------------------------
# attribution of one batch of (target, source, seed) units
# --------------------------------------------------------------------------------------------
@dataclass
class Attribution:
    """Scores and first-order terms of a batch of units.

    ``terms[(step, layer, side)]`` is ∂s/∂ε as an array (branches, units); ``side`` is "k",
    "v" or, with the QK fix, "o" (the whole layer output).
    """

    s_target: np.ndarray
    s_source: np.ndarray
    terms: dict[tuple[int, int, str], np.ndarray]
    branches: tuple[str, ...]

    def per_layer(self, n_layers: int) -> np.ndarray:
        """(units, layers) first-order estimates of s(patched_l) − s(source)."""
        out = np.zeros((len(self.s_source), n_layers))
        for (_, layer, _), g in self.terms.items():
            out[:, layer] += g.sum(axis=0)
        return out


def attribute(model: Any, scorer: Any, targets: Sequence[str], sources: Sequence[str], seeds: Sequence[int],
              alignment_text: str, *, text_length: int | None = None, layers: Sequence[int] | None = None,
              steps: int | None = None, guidance: float | None = None, duration: float | None = None,
              qk_fix: bool = False, checkpoint: bool = True) -> Attribution:
    """One target run (key/value capture) and one source run with a backward pass, batched."""
    kw = dict(steps=steps, guidance=guidance, duration=duration, text_length=text_length)
    cap = Capture(means=False, keys_values=True)
    with torch.no_grad():
        s_target = score_tensor(scorer, generate_tensor(model, targets, seeds, interventions=[cap], **kw),
                                alignment_text)
    iv = InterpolateKV(cap, layers=layers, alpha=0.0, requires_grad=True, qk_fix=qk_fix)
    with generation_session(model, [iv], steps=steps, guidance=guidance, grad=True, checkpoint=checkpoint) as run:
        clips = run(sources, seeds, duration=duration, text_length=text_length)
        s_source = score_tensor(scorer, clips, alignment_text)
        if not s_source.requires_grad:
            raise NotDifferentiableError("the score of the source run carries no gradient to the keys/values")
        s_source.sum().backward()  # (reentrant checkpointing rules out torch.autograd.grad)
        keys = list(iv.eps)
        grads = [iv.eps[k].grad for k in keys]
    terms = {k: (np.zeros(tuple(iv.eps[k].shape)) if g is None else g.detach().double().cpu().numpy())
             for k, g in zip(keys, grads)}
    return Attribution(s_target=s_target.detach().double().cpu().numpy(),
                       s_source=s_source.detach().double().cpu().numpy(), terms=terms,
                       branches=tuple(model.run_branches))


def interpolated_scores(model: Any, scorer: Any, target: str, source: str, seed: int, alignment_text: str,
                        layer: int, alphas: Sequence[float], qk_fix: bool = False, **kw: Any) -> np.ndarray:
    """s(source with layer `layer`'s keys/values at kv + α·(kv_target − kv)) for each α (every
    step, both branches; with `qk_fix` the layer output interpolated likewise): the
    finite-difference check of :func:`attribute`."""
    tl = kw.pop("text_length", None)
    cap = Capture(means=False, keys_values=True)
    with torch.no_grad():
        generate_tensor(model, [target], [seed], interventions=[cap], text_length=tl, **kw)
        out = []
        for a in alphas:
            iv = InterpolateKV(cap, layers=[layer], alpha=float(a), qk_fix=qk_fix)
            clips = generate_tensor(model, [source], [seed], interventions=[iv], text_length=tl, **kw)
            out.append(float(score_tensor(scorer, clips, alignment_text)[0]))
    return np.asarray(out)


def run_units(model: Any, scorer: Any, group: Sequence[Any], alignment_text: str, layer_ids: Sequence[int],
              gen_kw: dict[str, Any], counts: dict[str, int], *, qk_fix: bool = True,
              checkpoint: bool = True) -> list[dict[str, Any]]:
    """Attribution for localization units (objects with target, source, seed, text_length),
    in batches of ``model.batch_size``: per unit the scores, the first-order patched score of
    each layer in `layer_ids` (``s_source + estimate``), of all layers, and the per-step terms."""
    n_layers = len(model.layers)
    out: list[dict[str, Any]] = []
    for start in range(0, len(group), model.batch_size):
        part = list(group[start:start + model.batch_size])
        att = attribute(model, scorer, [u.target for u in part], [u.source for u in part], [u.seed for u in part],
                        alignment_text, text_length=part[0].text_length, qk_fix=qk_fix, checkpoint=checkpoint,
                        **gen_kw)
        counts["generations"] += 2 * len(part)
        counts["backward"] = counts.get("backward", 0) + len(part)
        est = att.per_layer(n_layers)
        for u in range(len(part)):
            s_src = float(att.s_source[u])
            out.append({"s_target": float(att.s_target[u]), "s_source": s_src,
                        "layers": {l: s_src + float(est[u, l]) for l in layer_ids},
                        "all": s_src + float(est[u].sum()), "steps": _step_rows(att, u)})
    return out


def _step_rows(att: Attribution, unit: int) -> list[dict[str, Any]]:
    rows: dict[tuple[int, int, str], dict[str, Any]] = {}
    for (step, layer, side), g in att.terms.items():
        for b, branch in enumerate(att.branches):
            row = rows.setdefault((layer, step, branch), {"layer": layer, "step": step, "branch": branch,
                                                          "d_keys": 0.0, "d_values": 0.0})
            row["d_keys" if side == "k" else "d_values"] += float(g[b, unit])
    return [rows[k] for k in sorted(rows)]
