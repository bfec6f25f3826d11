"""Backend-specific behaviour: loading and config errors, layer discovery, CFG order, text
length, generation, on the tiny pipelines of :mod:`tada.testing.tiny`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tada.models import Capture, load_model
from tada.testing.tiny import TINY_GENERATION

pytestmark = pytest.mark.usefixtures("single_thread")

DIFFUSERS_BACKENDS = ["stable_audio", "audioldm2", "ace_step15", "generic"]
SETTINGS = dict(TINY_GENERATION, generic=TINY_GENERATION["stable_audio"])

PIPELINE_BACKENDS = ["stable_audio", "audioldm2", "ace_step15"]


# --------------------------------------------------------------------------------------------
# config and loading
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", DIFFUSERS_BACKENDS)
def test_cuda_request_without_cuda_is_a_clear_error(backend, tiny_model_config):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = dict(tiny_model_config(backend), device="cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        load_model(cfg, key=f"models.{backend}")


@pytest.mark.parametrize("backend", DIFFUSERS_BACKENDS)
def test_missing_path_names_the_config_key(backend, tiny_model_config, tmp_path):
    cfg = dict(tiny_model_config(backend), path=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=rf"models\.{backend}\.path"):
        load_model(cfg, key=f"models.{backend}")


@pytest.mark.parametrize("backend", PIPELINE_BACKENDS)
def test_incomplete_pipeline_dir_names_what_is_missing(backend, tiny_model_config, tmp_path):
    source = tiny_model_config(backend)["path"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=rf"models\.{backend}\.path.*model_index\.json"):
        load_model(dict(tiny_model_config(backend), path=str(empty)), key=f"models.{backend}")
    partial = tmp_path / "partial"
    shutil.copytree(source, partial)
    shutil.rmtree(partial / "vae")
    with pytest.raises(FileNotFoundError, match=rf"models\.{backend}\.path.*vae"):
        load_model(dict(tiny_model_config(backend), path=str(partial)), key=f"models.{backend}")


@pytest.mark.parametrize("backend", DIFFUSERS_BACKENDS)
def test_unknown_config_key_is_named(backend, tiny_model_config):
    cfg = dict(tiny_model_config(backend), guidence=3.0)
    with pytest.raises(KeyError, match=rf"models\.{backend}\.guidence"):
        load_model(cfg, key=f"models.{backend}")


def test_bad_dtype_is_rejected(tiny_model_config):
    with pytest.raises(ValueError, match="dtype"):
        load_model(dict(tiny_model_config("stable_audio"), dtype="float64"), key="models.sa")


def test_bfloat16_loads_and_generates(tiny_model_config):
    model = load_model(dict(tiny_model_config("stable_audio"), dtype="bfloat16"), key="models.sa")
    assert model.pipe.transformer.dtype == torch.bfloat16
    gen = model.generate(["a song"], [0])
    assert gen.audio.dtype == np.float32 and np.isfinite(gen.audio).all()


def test_constructor_takes_a_built_pipeline(tiny_stable_audio_dir, tiny_model):
    from diffusers import StableAudioPipeline

    from tada.models.stable_audio import StableAudioModel

    pipe = StableAudioPipeline.from_pretrained(tiny_stable_audio_dir, local_files_only=True)
    model = StableAudioModel(pipe, steps=4, guidance=3.0, duration=1.0)
    reference = tiny_model("stable_audio")
    assert np.array_equal(model.generate(["a song"], [1]).audio, reference.generate(["a song"], [1]).audio)


# --------------------------------------------------------------------------------------------
# layers and CFG order
# --------------------------------------------------------------------------------------------
def test_stable_audio_layers(tiny_model):
    model = tiny_model("stable_audio")
    n = model.pipe.transformer.config.num_layers
    assert model.layer_names() == [f"transformer_blocks.{i}.attn2" for i in range(n)]
    assert all(layer.width == model.pipe.transformer.inner_dim for layer in model.layers)
    assert model.cfg_branches(3.0) == ("uncond", "cond") and model.cfg_branches(1.0) == ("cond",)
    assert model.describe()["backend"] == "stable_audio"


def test_audioldm2_layers_are_the_real_cross_attentions(tiny_model):
    model = tiny_model("audioldm2")
    attn2 = {n: m for n, m in model.pipe.unet.named_modules() if n.endswith("attn2")}
    cross = {n for n, m in attn2.items() if m.is_cross_attention}
    assert len(cross) < len(attn2), "some attn2 are self-attention in AudioLDM2"
    assert set(model.layer_names()) == cross
    names = model.layer_names()
    order = [n.split(".")[0] for n in names]
    assert order == sorted(order, key=["down_blocks", "mid_block", "up_blocks"].index)
    streams = model.layer_streams
    assert streams.count("generated") == streams.count("t5") == len(names) // 2
    gpt2_dim = model.pipe.language_model.config.n_embd
    t5_dim = model.pipe.text_encoder_2.config.d_model
    for layer, stream in zip(model.layers, streams):
        assert layer.module.to_k.in_features == (gpt2_dim if stream == "generated" else t5_dim)
    assert model.cfg_branches(3.0) == ("uncond", "cond")


def test_ace_step_layers_and_branch_order(tiny_model):
    model = tiny_model("ace_step15")
    n = model.pipe.transformer.config.num_hidden_layers
    assert model.layer_names() == [f"layers.{i}.cross_attn" for i in range(n)]
    assert type(model.layers[0].module).__name__ == "AceStepAttention"
    assert model.cfg_branches(3.0) == ("cond", "uncond") and model.cfg_branches(1.0) == ("cond",)


@pytest.mark.parametrize("backend", DIFFUSERS_BACKENDS)
def test_unconditional_rows_are_where_cfg_branches_says(backend, tiny_model):
    """Same seed, two prompts: the unconditional rows see the same (empty/null) condition, so
    their outputs at step 0 are identical; the conditional rows differ."""
    model = tiny_model(backend)
    prompts = ["jazz song, a love song", "a trumpet solo over strings"]
    length = max(model.token_count(p) for p in prompts)
    cap = Capture()
    model.generate(prompts, [5, 5], interventions=[cap], text_length=length)
    branches = model.cfg_branches(model.default_guidance)
    out = cap.means[(0, 0)].reshape(len(branches), len(prompts), -1)
    uncond, cond = out[branches.index("uncond")], out[branches.index("cond")]
    assert torch.allclose(uncond[0], uncond[1], atol=1e-6)
    assert not torch.allclose(cond[0], cond[1], atol=1e-6)


@pytest.mark.parametrize("backend", DIFFUSERS_BACKENDS)
def test_one_denoiser_call_per_step(backend, tiny_model):
    model = tiny_model(backend)
    calls = []
    hook = model.denoiser().register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        model.generate(["a song"], [0], steps=3)
    finally:
        hook.remove()
    assert len(calls) == 3


# --------------------------------------------------------------------------------------------
# text length and encoding
# --------------------------------------------------------------------------------------------
def _kv_shape(model, prompt, text_length=None):
    cap = Capture(layers=[0], means=False, keys_values=True)
    model.generate([prompt], [0], steps=1, interventions=[cap], text_length=text_length)
    return tuple(cap.kv[(0, 0)][0].shape)


def test_stable_audio_pads_every_prompt_to_model_max_length(tiny_model):
    model = tiny_model("stable_audio")
    short, long_ = "a song", "Melancholic jazz ballad with smooth saxophone, walking bassline"
    assert model.token_count(short) < model.token_count(long_)
    assert _kv_shape(model, short) == _kv_shape(model, long_) == _kv_shape(model, short, text_length=50)
    assert _kv_shape(model, short)[1] == model.pipe.tokenizer.model_max_length + 2


@pytest.mark.parametrize("backend", ["audioldm2", "ace_step15"])
def test_text_length_pads_to_a_common_shape(backend, tiny_model):
    model = tiny_model(backend)
    short, long_ = "a song", "Melancholic jazz ballad with smooth saxophone, walking bassline"
    assert model.token_count(short) < model.token_count(long_)
    layer = 1 if backend == "audioldm2" else 0  # the T5 stream of AudioLDM2
    shapes = []
    for prompt in (short, long_):
        cap = Capture(layers=[layer], means=False, keys_values=True)
        model.generate([prompt], [0], steps=1, interventions=[cap], text_length=model.token_count(long_) + 2)
        shapes.append(tuple(cap.kv[(0, layer)][0].shape))
    assert shapes[0] == shapes[1]
    with pytest.raises(ValueError, match="text_length"):
        model.generate([long_], [0], steps=1, text_length=model.token_count(short))


def test_ace_step_text_length_equal_to_natural_length_changes_nothing(tiny_model):
    model = tiny_model("ace_step15")
    n = model.token_count("a song, with piano")
    plain = model.generate(["a song, with piano"], [2])
    padded = model.generate(["a song, with piano"], [2], text_length=n)
    assert np.array_equal(plain.audio, padded.audio)
    assert "encode_prompt" not in model.pipe.__dict__


def test_audioldm2_matches_the_pipeline_called_directly(tiny_model):
    model = tiny_model("audioldm2")
    prompts, seeds, s = ["a song, with piano", "a melody"], [0, 1], SETTINGS["audioldm2"]
    ours = model.generate(prompts, seeds)
    latents = torch.stack([torch.randn(model.latent_shape(s["duration"]), generator=torch.Generator().manual_seed(x))
                           for x in seeds])
    with torch.inference_mode():
        direct = model.pipe(prompt=prompts, num_inference_steps=s["steps"], guidance_scale=s["guidance"],
                            audio_length_in_s=s["duration"], latents=latents, output_type="np").audios
    assert np.allclose(ours.audio[:, 0], direct, rtol=0, atol=1e-6 * np.abs(direct).max())


# --------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", DIFFUSERS_BACKENDS)
def test_generation_shape_rate_and_batch_independence(backend, tiny_model):
    model = tiny_model(backend)
    duration = SETTINGS[backend]["duration"]
    batch = model.generate(["a song", "a melody"], [0, 1])
    single = model.generate(["a melody"], [1], text_length=max(model.token_count(p) for p in ["a song", "a melody"]))
    assert batch.sample_rate == model.sample_rate > 0
    assert batch.audio.shape[0] == 2 and batch.audio.shape[2] == int(round(duration * model.sample_rate))
    assert np.allclose(batch.audio[1], single.audio[0], rtol=0, atol=1e-5 * np.abs(single.audio).max())
    assert batch.info["backend"] == model.backend


def test_stable_audio_negative_prompts(tiny_model):
    model = tiny_model("stable_audio")
    plain = model.generate(["a song"], [0])
    negative = model.generate(["a song"], [0], negative_prompts=["heavy metal concert with distorted guitars"])
    assert not np.array_equal(plain.audio, negative.audio)


def test_ace_step_rejects_negative_prompts(tiny_model):
    with pytest.raises(ValueError, match="negative"):
        tiny_model("ace_step15").generate(["a song"], [0], negative_prompts=["a melody"])


# --------------------------------------------------------------------------------------------
# generic backend
# --------------------------------------------------------------------------------------------
def test_generic_matches_the_stable_audio_backend(tiny_model):
    generic, stable = tiny_model("generic"), tiny_model("stable_audio")
    assert generic.layer_names() == stable.layer_names()
    assert generic.token_count("a song") == stable.token_count("a song")
    a = generic.generate(["a song", "a melody"], [0, 1])
    b = stable.generate(["a song", "a melody"], [0, 1])
    assert np.array_equal(a.audio, b.audio) and a.sample_rate == b.sample_rate


def test_generic_step_method(tiny_model_config):
    cfg = dict(tiny_model_config("generic"), step_method="forward")
    model = load_model(cfg, key="models.generic")
    assert model.denoiser() is not model.obj.transformer
    cap = Capture()
    gen = model.generate(["a song"], [0], interventions=[cap])
    assert cap.steps == list(range(SETTINGS["generic"]["steps"]))
    assert "forward" not in model.obj.transformer.__dict__
    assert np.array_equal(gen.audio, load_model(tiny_model_config("generic"), key="g").generate(["a song"], [0]).audio)


def test_generic_errors_name_their_keys(tiny_model_config):
    base = tiny_model_config("generic")
    with pytest.raises(ImportError, match=r"models\.g\.loader"):
        load_model(dict(base, loader="no_such_module_xyz:load"), key="models.g")
    with pytest.raises(AttributeError, match=r"models\.g\.denoiser"):
        load_model(dict(base, denoiser="unet"), key="models.g")
    with pytest.raises(RuntimeError, match=r"models\.g\.layer_patterns"):
        _ = load_model(dict(base, layer_patterns=[r"nothing_here$"]), key="models.g").layers
    with pytest.raises(KeyError, match=r"models\.g\.generate_fn"):
        load_model({k: v for k, v in base.items() if k != "generate_fn"}, key="models.g")
    with pytest.raises(ValueError, match=r"models\.g\.cfg_branches"):
        load_model(dict(base, cfg_branches=["cond", "negative"]), key="models.g")


def test_generic_reports_a_denoiser_that_is_never_called(tiny_model_config):
    model = load_model(dict(tiny_model_config("generic"), denoiser="vae.encoder"), key="models.g")
    with pytest.raises(RuntimeError, match="never called"):
        model._generate(["a song"], [0], steps=2, guidance=3.0, duration=1.0, negative_prompts=None,
                        text_length=None, progress=False)


def test_pipeline_dir_check_lists_components(tiny_stable_audio_dir):
    from tada.models._diffusers import check_pipeline_dir

    index = json.loads((check_pipeline_dir(tiny_stable_audio_dir, "k") / "model_index.json").read_text())
    assert {"transformer", "vae", "text_encoder", "tokenizer"} <= set(index)
