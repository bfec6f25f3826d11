"""The embedded backend: intervention invariants on a tiny random network, config handling,
training/checkpoint round trips, and a smoke test of the versioned weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tada.embedded.model import (EmbeddedConfig, EmbeddedTransformer, TextEncoder, euler_sample, load_network,
                                 median_over_time, save_network, shift_time, timesteps)
from tada.models import AddVector, Ablate, Capture, PatchKV, SwapCondition, load_model
from tada.models.embedded import EmbeddedModel

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "data" / "embedded_model"
STEPS = 3
PROMPTS = ["fast song, a piano melody", "slow song, a violin piece"]
SOURCES = ["a calm trumpet tune", "an electric guitar riff"]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


def tiny_network(seed: int = 0, frames_per_token: int = 2) -> EmbeddedTransformer:
    torch.manual_seed(seed)
    cfg = EmbeddedConfig(width=32, depth=3, heads=2, n_mels=8, frames_per_second=8.0, duration=1.0,
                         frames_per_token=frames_per_token, text_length=16)
    net = EmbeddedTransformer(cfg)
    with torch.no_grad():  # the zero-initialised gates would hide the blocks' effect
        for p in net.parameters():
            if not p.abs().any():
                p.normal_(0.0, 0.05)
    return net


@pytest.fixture(scope="module")
def model(encoder) -> EmbeddedModel:
    return EmbeddedModel(tiny_network(), text_encoder=encoder, steps=STEPS, guidance=3.0)


def gen(model, prompts=PROMPTS, seeds=(1, 2), **kw):
    return model.generate(list(prompts), seeds=list(seeds), steps=STEPS, guidance=kw.pop("guidance", 3.0), **kw)


def assert_processors_restored(model):
    from diffusers.models.attention_processor import AttnProcessor2_0

    for layer in model.layers:
        assert type(layer.module.processor) is AttnProcessor2_0
        assert not layer.module.to_k._forward_hooks and not layer.module.to_v._forward_hooks
    assert not model.denoiser()._forward_pre_hooks


# ----- layers and shapes ----------------------------------------------------------------------
def test_layers_are_named_cross_attentions(model):
    from diffusers.models.attention_processor import Attention

    assert model.layer_names() == ["blocks.0.attn2", "blocks.1.attn2", "blocks.2.attn2"]
    assert all(isinstance(l.module, Attention) and l.module.is_cross_attention for l in model.layers)
    assert all(l.width == 32 for l in model.layers)
    assert model.text_outside_cross_attention is False


def test_generation_shapes_and_lazy_audio(model):
    g = gen(model)
    assert g.features.shape == (2, 8, 8)
    assert g.features.dtype == np.float32
    assert g.__dict__["_audio"] is None  # not vocoded until asked
    assert g.info["backend"] == "embedded" and g.info["steps"] == STEPS


def test_encode_prompts_pads_to_text_length(model):
    states = model.encode_prompts(PROMPTS)
    assert states.shape == (2, 16, 384)
    assert model.encode_prompts(PROMPTS, text_length=24).shape == (2, 24, 384)
    assert model.encode_prompts([""], negative=True).shape == (1, 16, 384)
    assert model.token_count("a piano song") == 5  # [CLS] a piano song [SEP]


def test_same_seed_same_output(model):
    a, b = gen(model), gen(model)
    assert np.array_equal(a.features, b.features)
    c = gen(model, seeds=(3, 4))
    assert not np.array_equal(a.features, c.features)


def test_seed_does_not_depend_on_batch(model):
    both = gen(model)
    alone = gen(model, prompts=PROMPTS[1:], seeds=(2,))
    np.testing.assert_allclose(both.features[1], alone.features[0], atol=1e-5)


# ----- intervention invariants ------------------------------------------------------------
def test_capture_is_bit_identical(model):
    base = gen(model)
    cap = Capture(keys_values=True, frame_steps=[0])
    out = gen(model, interventions=[cap])
    assert np.array_equal(base.features, out.features)
    assert cap.stacked_means().shape == (2, STEPS, 3, 2, 32)
    assert_processors_restored(model)


def test_alpha_zero_is_bit_identical(model):
    base = gen(model)
    vec = {i: torch.randn(32) for i in range(3)}
    out = gen(model, interventions=[AddVector(vec, alpha=0.0)])
    assert np.array_equal(base.features, out.features)
    moved = gen(model, interventions=[AddVector(vec, alpha=2.0)])
    assert not np.array_equal(base.features, moved.features)


def test_patching_all_layers_reproduces_target(model):
    cap = Capture(keys_values=True)
    target = gen(model, interventions=[cap])
    source = gen(model, prompts=SOURCES)
    assert not np.array_equal(target.features, source.features)
    patched = gen(model, prompts=SOURCES, interventions=[PatchKV(cap)])
    assert np.array_equal(patched.features, target.features)


def test_swapping_conditioning_everywhere_reproduces_target(model):
    target = gen(model)
    states = model.encode_prompts(PROMPTS)
    swapped = gen(model, prompts=SOURCES, interventions=[SwapCondition(None, states)])
    assert np.array_equal(swapped.features, target.features)


def test_steering_last_layer_leaves_earlier_layers_at_step_zero(model):
    before = Capture()
    gen(model, interventions=[before])
    after = Capture()
    gen(model, interventions=[after, AddVector({2: torch.randn(32)}, alpha=3.0)])
    for layer in (0, 1):
        assert torch.equal(before.means[(0, layer)], after.means[(0, layer)])
    assert not torch.equal(before.means[(1, 0)], after.means[(1, 0)])  # later steps do move


def test_cond_only_steering_leaves_uncond_rows(model):
    before = Capture()
    gen(model, interventions=[before])
    after = Capture()
    gen(model, interventions=[AddVector({0: torch.randn(32)}, alpha=3.0, branch="cond"), after])
    b, a = before.stacked_means(), after.stacked_means()  # (batch, steps, layers, branches, width)
    uncond, cond = before.branches.index("uncond"), before.branches.index("cond")
    assert torch.equal(b[:, 0, :, uncond], a[:, 0, :, uncond])
    assert not torch.equal(b[:, 0, :, cond], a[:, 0, :, cond])


def test_ablate_changes_output_and_is_removed(model):
    base = gen(model)
    out = gen(model, interventions=[Ablate([1])])
    assert not np.array_equal(base.features, out.features)
    assert_processors_restored(model)
    assert np.array_equal(gen(model).features, base.features)


def test_interventions_gone_after_error(model):
    with pytest.raises(IndexError):
        gen(model, interventions=[AddVector({7: torch.randn(32)})])
    assert_processors_restored(model)


def test_without_guidance_one_branch(model):
    cap = Capture()
    gen(model, guidance=1.0, interventions=[cap])
    assert cap.branches == ("cond",)
    assert cap.stacked_means().shape[3] == 1


def test_denoiser_called_once_per_step(model):
    calls = []
    handle = model.denoiser().register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    try:
        gen(model)
    finally:
        handle.remove()
    assert calls == [4] * STEPS  # uncond + cond rows batched


# ----- the network ------------------------------------------------------------------------
def test_no_seams_single_frame_tokens():
    net = tiny_network(frames_per_token=1)
    x = torch.randn(2, 8, 8)
    out = net(x, torch.rand(2), torch.randn(2, 16, 384))
    assert out.shape == x.shape


def test_text_only_through_cross_attention():
    net = tiny_network()
    names = [n for n, m in net.named_modules() if hasattr(m, "is_cross_attention") and m.is_cross_attention]
    assert names == ["blocks.0.attn2", "blocks.1.attn2", "blocks.2.attn2"]
    x, t = torch.randn(1, 8, 8), torch.rand(1)
    text = torch.randn(1, 16, 384)
    with torch.no_grad():
        for block in net.blocks:  # with cross-attention silenced, text has no effect
            block.attn2.to_out[0].weight.zero_()
            block.attn2.to_out[0].bias.zero_()
        assert torch.equal(net(x, t, text), net(x, t, torch.randn(1, 16, 384)))


def test_save_load_round_trip(tmp_path):
    net = tiny_network()
    save_network(net, tmp_path, {"step": 3})
    loaded, meta = load_network(tmp_path)
    assert meta["step"] == 3 and meta["model"]["width"] == 32
    x, t, e = torch.randn(1, 8, 8), torch.rand(1), torch.randn(1, 16, 384)
    with torch.no_grad():
        assert torch.equal(net.eval()(x, t, e), loaded(x, t, e))


def test_euler_sample_is_deterministic():
    net = tiny_network().eval()
    cond, uncond, noise = torch.randn(2, 16, 384), torch.randn(1, 16, 384), torch.randn(2, 8, 8)
    a = euler_sample(net, cond, uncond, noise, 4, 3.0)
    b = euler_sample(net, cond, uncond, noise, 4, 3.0)
    assert torch.equal(a, b) and a.shape == noise.shape


def test_output_median_removes_flicker_and_keeps_onsets():
    step = torch.zeros(1, 12, 2)
    step[:, 6:] = 1.0  # a note onset at frame 6
    flicker = step.clone()
    flicker[:, 2] = 1.0  # a one-frame spike
    assert torch.equal(median_over_time(step, 3), step)
    assert torch.equal(median_over_time(flicker, 3), step)
    assert torch.equal(median_over_time(flicker, 1), flicker)
    with pytest.raises(ValueError, match="odd"):
        median_over_time(step, 4)
    cfg = EmbeddedConfig(output_median=3)
    assert torch.equal(cfg.from_network(flicker), cfg.from_network(step))


def test_time_shift_keeps_ends_and_moves_steps_to_high_noise():
    t = torch.linspace(0, 1, 11)
    assert torch.equal(shift_time(t, 1.0), t)
    s = shift_time(t, 3.0)
    assert s[0] == 0 and s[-1] == 1 and bool((s[1:] > s[:-1]).all()) and bool((s[1:-1] > t[1:-1]).all())
    assert float(shift_time(torch.tensor(0.5), 3.0)) == pytest.approx(0.75)  # 3 * 0.5 / (1 + 2 * 0.5)
    grid = timesteps(4, shift=3.0)
    assert grid[0] == 1 and grid[-1] == 0 and bool((grid[:-1] > grid[1:]).all())
    assert float(grid[1]) == pytest.approx(3 * 0.75 / (1 + 2 * 0.75))


# ----- config -----------------------------------------------------------------------------
def test_from_config_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"models\.embedded\.path"):
        load_model({"backend": "embedded", "path": str(tmp_path / "nope")}, key="models.embedded")


def test_from_config_unknown_keys(tmp_path):
    with pytest.raises(KeyError, match="colour"):
        load_model({"backend": "embedded", "path": str(tmp_path), "colour": 1}, key="models.embedded")


def test_from_config_loads_saved_network(tmp_path, encoder, monkeypatch):
    save_network(tiny_network(), tmp_path)
    monkeypatch.setattr("tada.embedded.model.TextEncoder", lambda *a, **k: encoder)
    m = load_model({"backend": "embedded", "path": str(tmp_path), "steps": 2, "guidance": 2.0,
                    "duration": 1.0, "batch_size": 4, "device": "cpu", "dtype": "float32"},
                   key="models.embedded")
    assert m.default_steps == 2 and m.default_guidance == 2.0 and m.batch_size == 4
    g = m.generate(["a piano song"], seeds=0)
    assert g.features.shape == (1, 8, 8)


# ----- training ---------------------------------------------------------------------------
def _fake_dataset(out: Path, n: int = 6, frames: int = 8, n_mels: int = 8) -> None:
    rng = np.random.default_rng(0)
    caps = np.array([[f"a {w} song", f"{w} music"] for w in ["fast", "slow", "piano", "violin", "happy", "sad"][:n]])
    attrs = [json.dumps({"lead": "piano", "tempo": "fast", "mood": "happy", "vocal": "none",
                         "vocal_style": "none", "genre": "jazz", "drums": True, "maracas": False})] * n
    np.savez(out / "dataset.npz", mels=rng.uniform(-1, 1, (n, frames, n_mels)).astype(np.float16),
             attributes=np.array(attrs), captions=caps, n_clips=np.array(n), seed=np.array(0),
             duration=np.array(1.0))


def _train(out: Path, steps: int) -> None:
    from tada.embedded.train import train_from_config

    train_from_config({"n_clips": 6, "captions_per_clip": 2, "duration": 1.0, "steps": steps,
                       "batch_size": 4, "warmup": 2, "eval_every": 10_000, "checkpoint_every": 2,
                       "eval_classifiers": False, "bf16": False, "threads": 1,
                       "model": {"width": 32, "depth": 2, "heads": 2, "frames_per_second": 8.0,
                                 "text_length": 8}}, out)


def test_training_resumes_exactly(tmp_path, monkeypatch):
    pytest.importorskip("tada.world.features")
    monkeypatch.setattr("tada.embedded.train.evaluate", lambda *a, **k: {"skipped": True})
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        _fake_dataset(d)
    _train(a, 4)
    _train(b, 2)
    assert json.loads((b / "checkpoint.json").read_text())["step"] == 2
    _train(b, 4)
    from safetensors.torch import load_file

    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6)
    meta = json.loads((a / "config.json").read_text())
    assert meta["step"] == 4 and meta["model"]["width"] == 32
    lines = [json.loads(l) for l in (a / "log.jsonl").read_text().splitlines()]
    assert lines and "eval" in lines[-1]


# ----- the versioned weights --------------------------------------------------------------
@pytest.mark.skipif(not (WEIGHTS / "model.safetensors").exists(), reason="no trained embedded weights")
def test_versioned_weights_smoke():
    m = load_model({"backend": "embedded", "path": str(WEIGHTS)}, key="models.embedded")
    assert len(m.layers) >= 8
    g = m.generate(["a fast piano song"], seeds=0, steps=4)
    assert g.features.shape[0] == 1 and g.features.shape[2] == m.config.n_mels
    assert np.isfinite(g.features).all()
    assert g.features.min() >= -1.0 and g.features.max() <= 1.0
