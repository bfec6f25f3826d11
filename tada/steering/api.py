"""Applying steering vectors: ``tada.steer`` for any SteerableModel, and attention processors for a
plain diffusers pipeline.

>>> with tada.steer(model, "results/embedded/vectors/caa/localized/tempo.safetensors", alpha=2.0):
...     gen = model.generate(["a calm song"], seeds=[0])

``alpha`` may be a list with one value per prompt of the batch, so one generation renders a
whole α sweep (``model.generate([prompt] * 5, seeds=[0] * 5)`` under ``alpha=[-2, -1, 0, 1, 2]``).
Rows whose α is 0 are untouched, so they are bit-identical to unsteered generation.

Without tada's model wrappers, :func:`diffusers_processors` gives a full processor dict for
``denoiser.set_attn_processor``::

    procs = diffusers_processors(pipe, vector, alpha=2.0)
    pipe.transformer.set_attn_processor(procs)
    audio = pipe(prompt, num_inference_steps=vector.steps, ...).audios
    pipe.transformer.set_attn_processor(procs.originals)      # undo

``set_attn_processor`` empties the dict it is given (it pops every entry); ``procs.originals``
is a fresh dict on every access, and ``dict(procs)`` keeps a reusable copy.

Step counting there: each steering processor counts its own calls. Every attention module is
called once per denoiser forward, so its call count is the sampler step; the count wraps
modulo ``steps`` (default: the vector's step count), so consecutive generations with that many
steps need no reset. After an interrupted generation, or with a different step count, call
``procs.reset()`` before the next one. A per-step vector used with another step count
(``steps=``) is refused unless ``resample_steps=True`` resamples its schedule linearly. CFG layout: diffusers pipelines batch ``[uncond; cond]`` when guidance > 1
(``branches=("uncond", "cond")``, the default); pass ``branches=("cond",)`` without CFG.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
from typing import Any, Iterator, Sequence

import torch

from tada.models.base import output_width
from tada.models.interventions import AddVector, InterventionProcessor, RunState, apply_interventions

from .vectors import SteeringVector, as_vector


@contextlib.contextmanager
def steer(model: Any, vector: SteeringVector | str | os.PathLike, alpha: float | Sequence[float] = 1.0, *,
          layers: Sequence[int | str] | None = None, start_step: int = 0, renorm: bool = False,
          branch: str = "cond", resample_steps: bool = False) -> Iterator[AddVector]:
    """Steer every ``model.generate`` inside the block with h ← h + α·v.

    `vector` is a :class:`SteeringVector` or a path to one; `layers` (indices or names) restricts
    it to some of its layers; `start_step` leaves the first steps alone; `renorm` rescales each
    steered token to its original norm; `branch` is the CFG branch steered ("cond", "uncond",
    "all"). Raises :class:`~tada.steering.vectors.IncompatibleVectorError` if the vector was
    built for layers with other names or widths, or on other weights (``weights_sha256``).
    A per-step vector is refused in a generation with another step count (ValueError naming
    both) unless `resample_steps`, which resamples its schedule linearly to the generation's
    steps. Yields the installed intervention.
    """
    vec = as_vector(vector)
    chosen = None if layers is None else model.resolve_layers(layers)
    vec.check_compatible(model, chosen)
    iv = vec.intervention(alpha, layers=chosen, start_step=start_step, renorm=renorm, branch=branch,
                          resample_steps=resample_steps)
    with apply_interventions(model, [iv]):
        yield iv


# --------------------------------------------------------------------------------------------
# plain diffusers
# --------------------------------------------------------------------------------------------
class SteeringProcessor(InterventionProcessor):
    """Wraps a diffusers attention processor and adds α·v to its output.

    Keeps its own step counter (see the module doc) and delegates the attention itself.
    """

    def __init__(self, inner: Any, layer: int, intervention: AddVector, branches: Sequence[str],
                 steps: int | None):
        state = RunState(branches_fn=lambda: tuple(branches))
        super().__init__(inner, layer, state, [intervention])
        self.calls = 0
        self.steps = None if steps is None else int(steps)
        state.total_steps = self.steps  # a per-step vector refuses another step count

    def reset(self) -> None:
        self.calls = 0

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        self.state.step = self.calls % self.steps if self.steps else self.calls
        self.calls += 1
        return super().__call__(attn, hidden_states, encoder_hidden_states, *args, **kwargs)


class ProcessorDict(dict):
    """Processors for every attention layer (``set_attn_processor`` needs them all); the steered
    ones are :class:`SteeringProcessor`. ``originals`` restores the previous processors."""

    steered: dict[str, SteeringProcessor]
    _originals: dict[str, Any]

    @property
    def originals(self) -> dict[str, Any]:
        """A new dict of the processors that were in place before (for ``set_attn_processor``)."""
        return dict(self._originals)

    def reset(self) -> None:
        """Restart step counting (before a generation that follows an interrupted one)."""
        for proc in self.steered.values():
            proc.reset()


def _denoiser(pipe_or_denoiser: Any) -> torch.nn.Module:
    if hasattr(pipe_or_denoiser, "attn_processors"):
        return pipe_or_denoiser
    for attr in ("transformer", "unet"):
        net = getattr(pipe_or_denoiser, attr, None)
        if net is not None and hasattr(net, "attn_processors"):
            return net
    raise TypeError(f"{type(pipe_or_denoiser).__name__} is neither a diffusers denoiser (no "
                    "attn_processors) nor a pipeline with a .transformer or .unet")


def diffusers_processors(pipe_or_denoiser: Any, vector: SteeringVector | str | os.PathLike,
                         alpha: float | Sequence[float] = 1.0, *,
                         layer_names: Sequence[str] | None = None, start_step: int = 0,
                         renorm: bool = False, branch: str = "cond",
                         branches: Sequence[str] = ("uncond", "cond"),
                         steps: int | None = None, resample_steps: bool = False) -> ProcessorDict:
    """A processor dict for ``denoiser.set_attn_processor`` that steers a plain diffusers model.

    The vector's layers are found by name in the denoiser (``<name>.processor`` keys);
    `layer_names` restricts them to names matching any of the given glob patterns (e.g.
    ``"transformer_blocks.1[12].attn2"``). Every other attention layer keeps its current
    processor. Each steered layer's output width must match the vector's.
    """
    vec = as_vector(vector)
    net = _denoiser(pipe_or_denoiser)
    current = dict(net.attn_processors)
    modules = dict(net.named_modules())
    chosen = [i for i in vec.layers
              if layer_names is None or any(fnmatch.fnmatchcase(vec.model["layers"][i], p) for p in layer_names)]
    if not chosen:
        raise ValueError(f"no layer of the vector matches {list(layer_names or [])}; "
                         f"its layers are {vec.layer_names}")
    problems = []
    for i in chosen:
        name, width = vec.model["layers"][i], int(vec.model["widths"][i])
        if f"{name}.processor" not in current:
            problems.append(f"layer {i} '{name}' is not an attention module of this {type(net).__name__}")
            continue
        have = output_width(modules[name])  # 0: the module does not say
        if have and have != width:
            problems.append(f"layer {i} '{name}': vector width {width}, model width {have}")
    if problems:
        from .vectors import IncompatibleVectorError

        raise IncompatibleVectorError(f"steering vector '{vec.concept}' ({vec.method}) does not fit this "
                                      f"{type(net).__name__}: " + "; ".join(problems))
    steps = vec.steps if steps is None and vec.steps > 1 else steps
    out = ProcessorDict(current)
    out._originals = dict(current)
    out.steered = {}
    for i in chosen:
        key = f"{vec.model['layers'][i]}.processor"
        iv = AddVector({i: vec.vectors[i]}, alpha, branch=branch, renorm=renorm, start_step=start_step,
                       resample_steps=resample_steps)
        proc = SteeringProcessor(current[key], i, iv, branches, steps)
        out[key] = proc
        out.steered[key] = proc
    return out
