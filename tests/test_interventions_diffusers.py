"""Invariants of the interventions on every diffusers-based backend (tiny pipelines, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tada.models import Ablate, AddVector, Capture, PatchKV, SwapCondition

PROMPTS = ["a song, with piano", "sad song, a melody"]
SEEDS = [3, 4]
TARGET, SOURCE = "jazz song, a love song", "rock song, a love song"

pytestmark = pytest.mark.usefixtures("single_thread")

DIFFUSERS_BACKENDS = ["stable_audio", "audioldm2", "ace_step15", "generic"]


@pytest.fixture(params=DIFFUSERS_BACKENDS)
def model(request, tiny_model):
    return tiny_model(request.param)


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference relative to the largest magnitude of `b`."""
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-30))


def vectors(model, layers, scale: float = 1.0, seed: int = 0) -> dict[int, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {i: scale * torch.randn(model.layers[i].width, generator=g) for i in layers}


def common_length(model, prompts) -> int:
    return max(model.token_count(p) for p in prompts)


def test_capture_leaves_audio_bit_identical(model):
    plain = model.generate(PROMPTS, SEEDS)
    cap = Capture(keys_values=True, frame_steps=[0])
    captured = model.generate(PROMPTS, SEEDS, interventions=[cap])
    assert np.array_equal(plain.audio, captured.audio)
    means = cap.stacked_means()
    steps = plain.info["steps"]
    assert means.shape[:4] == (len(PROMPTS), steps, len(model.layers), len(model.run_branches))
    assert len(cap.kv) == steps * len(model.layers)


def test_add_vector_with_zero_alpha_is_bit_identical(model):
    plain = model.generate(PROMPTS, SEEDS)
    all_layers = range(len(model.layers))
    zero = AddVector(vectors(model, all_layers, 10.0), alpha=0.0)
    per_prompt_zero = AddVector(vectors(model, all_layers, 10.0, seed=1), alpha=[0.0, 0.0], renorm=True)
    steered = model.generate(PROMPTS, SEEDS, interventions=[zero, per_prompt_zero])
    assert np.array_equal(plain.audio, steered.audio)


def test_patching_every_layer_with_target_keys_values(model):
    """Text enters these models only through cross-attention, so the source prompt with every
    layer's keys/values patched from the target run must reproduce the target run."""
    length = common_length(model, [TARGET, SOURCE])
    target_cache = Capture(keys_values=True, means=False)
    target = model.generate([TARGET], [7], interventions=[target_cache], text_length=length)
    source = model.generate([SOURCE], [7], text_length=length)
    patched = model.generate([SOURCE], [7], interventions=[PatchKV(target_cache)], text_length=length)
    assert rel_diff(source.audio, target.audio) > 1e-3, "the two prompts should give different audio"
    if model.text_outside_cross_attention:
        assert rel_diff(patched.audio, target.audio) < rel_diff(source.audio, target.audio)
    else:
        assert rel_diff(patched.audio, target.audio) < 1e-5


def test_patching_one_layer_moves_output_partway(model):
    length = common_length(model, [TARGET, SOURCE])
    target_cache = Capture(keys_values=True, means=False)
    target = model.generate([TARGET], [7], interventions=[target_cache], text_length=length)
    source = model.generate([SOURCE], [7], text_length=length)
    patched = model.generate([SOURCE], [7], interventions=[PatchKV(target_cache, layers=[0])],
                             text_length=length)
    assert not np.array_equal(patched.audio, source.audio)
    assert rel_diff(patched.audio, target.audio) > 1e-6


def test_steering_last_layer_leaves_earlier_layers_untouched(model):
    """At step 0 nothing upstream of the last cross-attention layer can see its steering."""
    last = len(model.layers) - 1
    plain_cap, steered_cap = Capture(), Capture()
    model.generate(PROMPTS, SEEDS, interventions=[plain_cap])
    model.generate(PROMPTS, SEEDS, interventions=[AddVector(vectors(model, [last], 5.0), branch="all"),
                                                  steered_cap])
    for layer in range(last):
        assert torch.equal(plain_cap.means[(0, layer)], steered_cap.means[(0, layer)]), layer
    assert not torch.equal(plain_cap.means[(0, last)], steered_cap.means[(0, last)])
    assert not torch.equal(plain_cap.means[(1, 0)], steered_cap.means[(1, 0)])


def test_layers_outside_the_set_keep_their_processors(model):
    from tada.models.interventions import apply_interventions

    originals = [layer.module.processor for layer in model.layers]
    with apply_interventions(model, [AddVector(vectors(model, [1]), alpha=1.0)]):
        now = [layer.module.processor for layer in model.layers]
    assert now[1] is not originals[1]
    assert all(now[i] is originals[i] for i in range(len(originals)) if i != 1)


def test_conditional_steering_leaves_unconditional_branch(model):
    branches = model.cfg_branches(model.default_guidance)
    assert set(branches) == {"cond", "uncond"}
    n = len(PROMPTS)
    cond = slice(branches.index("cond") * n, (branches.index("cond") + 1) * n)
    uncond = slice(branches.index("uncond") * n, (branches.index("uncond") + 1) * n)
    last = len(model.layers) - 1
    plain_cap, steered_cap = Capture(), Capture()
    model.generate(PROMPTS, SEEDS, interventions=[plain_cap])
    model.generate(PROMPTS, SEEDS, interventions=[AddVector(vectors(model, [0], 5.0), alpha=[1.0, 2.0]),
                                                  steered_cap])
    for layer in (0, last):
        plain, steered = plain_cap.means[(0, layer)], steered_cap.means[(0, layer)]
        assert torch.equal(plain[uncond], steered[uncond]), layer
        assert not torch.equal(plain[cond][0], steered[cond][0]), layer
        assert not torch.equal(plain[cond][1], steered[cond][1]), layer


def test_seeds_fix_the_audio(model):
    a = model.generate(PROMPTS, SEEDS)
    b = model.generate(PROMPTS, SEEDS)
    c = model.generate(PROMPTS, [s + 100 for s in SEEDS])
    assert np.array_equal(a.audio, b.audio)
    assert rel_diff(c.audio, a.audio) > 1e-3
    assert a.audio.dtype == np.float32 and a.audio.ndim == 3 and a.audio.shape[0] == len(PROMPTS)


def _hook_counts(model) -> list[tuple[int, int]]:
    modules = [model.denoiser()]
    for layer in model.layers:
        modules += [layer.module, layer.module.to_k, layer.module.to_v]
    return [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in modules]


def test_interventions_are_removed_after_the_run(model):
    originals = [layer.module.processor for layer in model.layers]
    hooks = _hook_counts(model)
    fresh = model.generate(PROMPTS, SEEDS)
    cache = Capture(keys_values=True)
    model.generate(PROMPTS, SEEDS, interventions=[cache, AddVector(vectors(model, [0]), alpha=3.0),
                                                  Ablate([1]), PatchKV(cache, layers=[2])])
    assert all(layer.module.processor is orig for layer, orig in zip(model.layers, originals))
    assert _hook_counts(model) == hooks
    assert np.array_equal(model.generate(PROMPTS, SEEDS).audio, fresh.audio)


def test_interventions_are_removed_after_an_error(model):
    originals = [layer.module.processor for layer in model.layers]
    hooks = _hook_counts(model)
    wrong_width = AddVector({0: torch.ones(model.layers[0].width + 1)}, alpha=1.0)
    with pytest.raises(ValueError, match="width"):
        model.generate(PROMPTS, SEEDS, interventions=[Capture(keys_values=True), wrong_width])
    assert all(layer.module.processor is orig for layer, orig in zip(model.layers, originals))
    assert _hook_counts(model) == hooks


def test_ablate_changes_the_output(model):
    plain = model.generate(PROMPTS, SEEDS)
    ablated = model.generate(PROMPTS, SEEDS, interventions=[Ablate([0, 1])])
    assert rel_diff(ablated.audio, plain.audio) > 1e-4
    one = model.generate(PROMPTS, SEEDS, interventions=[Ablate([0, 1], samples=[1])])
    assert np.array_equal(one.audio[0], plain.audio[0])
    assert not np.array_equal(one.audio[1], plain.audio[1])


def _own_states(model, prompts, negative: bool, length: int | None):
    """(layers, states) pairs that give every layer the states it already reads."""
    if model.backend == "generic":
        pytest.skip("the generic test config has no encode_fn")
    if model.backend == "stable_audio":
        return [(None, model.encode_prompts(prompts, negative=negative, duration=model.default_duration))]
    if model.backend == "ace_step15":
        return [(None, model.encode_prompts(prompts, negative=negative, text_length=length,
                                            duration=model.default_duration))]
    encoded = model.encode_prompts(prompts, negative=negative, text_length=length)
    streams = model.layer_streams
    return [([i for i, s in enumerate(streams) if s == stream], encoded[stream])
            for stream in ("generated", "t5")]


@pytest.mark.parametrize("branch", ["cond", "uncond"])
def test_swap_condition_with_own_states_is_identity(model, branch):
    length = common_length(model, PROMPTS) if model.backend != "stable_audio" else None
    plain = model.generate(PROMPTS, SEEDS, text_length=length)
    swaps = [SwapCondition(layers, states, branch=branch)
             for layers, states in _own_states(model, PROMPTS, branch == "uncond", length)]
    swapped = model.generate(PROMPTS, SEEDS, interventions=swaps, text_length=length)
    assert rel_diff(swapped.audio, plain.audio) < 1e-5
    other = [SwapCondition(layers, states, branch=branch)
             for layers, states in _own_states(model, PROMPTS[::-1], branch == "uncond", length)]
    changed = model.generate(PROMPTS, SEEDS, interventions=other, text_length=length)
    if branch == "cond":
        assert rel_diff(changed.audio, plain.audio) > 1e-4
