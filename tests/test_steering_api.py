"""`tada.steer`, `diffusers_processors` and `tada steer` on a tiny diffusers Stable Audio pipeline."""

import copy

import numpy as np
import pytest
import torch
import yaml

import tada
from tada.steering.api import diffusers_processors
from tada.steering.vectors import IncompatibleVectorError, SteeringVector

GEN = {"steps": 4, "guidance": 3.0, "duration": 1.0}
PROMPT = "a song, with piano"


pytestmark = pytest.mark.usefixtures("module_single_thread")


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model("stable_audio")


@pytest.fixture(scope="module")
def vector(model):
    gen = torch.Generator().manual_seed(0)
    desc = model.describe()
    return SteeringVector({i: 2.0 * torch.randn(GEN["steps"], desc["widths"][i], generator=gen) for i in (1, 2)},
                          method="caa", concept="piano", model=desc, layer_set="custom")


@pytest.fixture(scope="module")
def unsteered(model):
    return model.generate([PROMPT], seeds=[3], **GEN).audio


def _processors(model):
    return dict(model.denoiser().attn_processors)


def test_steer_zero_alpha_is_bit_identical_and_context_restores_processors(model, vector, unsteered):
    before = _processors(model)
    with tada.steer(model, vector, alpha=0.0):
        zero = model.generate([PROMPT], seeds=[3], **GEN).audio
        assert type(model.denoiser().attn_processors["transformer_blocks.1.attn2.processor"]).__name__ \
            == "InterventionProcessor"
    assert np.array_equal(zero, unsteered)
    with tada.steer(model, vector, alpha=1.5):
        steered = model.generate([PROMPT], seeds=[3], **GEN).audio
    assert not np.allclose(steered, unsteered, atol=1e-4)
    after = _processors(model)
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    assert np.array_equal(model.generate([PROMPT], seeds=[3], **GEN).audio, unsteered)


def test_steer_accepts_a_path_layer_subset_and_per_prompt_alphas(model, vector, unsteered, tmp_path):
    path = vector.save(tmp_path / "piano.safetensors")
    with tada.steer(model, path, alpha=[0.0, 1.5], layers=["transformer_blocks.2.attn2"]) as iv:
        assert iv.layers == (2,)
        pair = model.generate([PROMPT, PROMPT], seeds=[3, 3], **GEN).audio
    with tada.steer(model, vector, alpha=1.5, layers=[2]):
        single = model.generate([PROMPT], seeds=[3], **GEN).audio
    np.testing.assert_allclose(pair[1], single[0], atol=1e-5)
    np.testing.assert_allclose(pair[0], unsteered[0], atol=1e-5)
    with tada.steer(model, vector, alpha=1.5, start_step=GEN["steps"]):   # starts after the last step
        assert np.array_equal(model.generate([PROMPT], seeds=[3], **GEN).audio, unsteered)


def test_diffusers_processors_reproduce_tada_steer_on_a_plain_pipeline(model, vector):
    from tada.models._diffusers import generators
    from tada.models.base import seeded_noise

    pipe = model.pipe
    net = pipe.transformer
    cfg = net.config

    def plain():
        latents = seeded_noise([3], (cfg.in_channels, cfg.sample_size), model.device, model.dtype)
        out = pipe(prompt=[PROMPT], num_inference_steps=GEN["steps"], guidance_scale=GEN["guidance"],
                   audio_start_in_s=0.0, audio_end_in_s=GEN["duration"], latents=latents,
                   generator=generators([3]), output_type="pt")
        return out.audios.float().numpy()

    with tada.steer(model, vector, alpha=1.5):
        expect = model.generate([PROMPT], seeds=[3], **GEN).audio
    procs = diffusers_processors(pipe, vector, alpha=1.5)
    assert len(procs) == len(net.attn_processors) and len(procs.steered) == 2
    original = procs.originals
    net.set_attn_processor(procs)
    try:
        first = plain()
        second = plain()          # counting wraps after `steps` calls: no reset needed
    finally:
        net.set_attn_processor(original)
    np.testing.assert_array_equal(first, expect.reshape(first.shape))
    np.testing.assert_array_equal(second, first)
    only_one = diffusers_processors(net, vector, alpha=1.5, layer_names=["*blocks.2.attn2"])
    assert list(only_one.steered) == ["transformer_blocks.2.attn2.processor"]
    assert all(net.attn_processors[k] is v for k, v in original.items())


def test_vectors_for_other_widths_or_names_are_refused(model, vector):
    desc = copy.deepcopy(model.describe())
    desc["widths"] = [w + 8 for w in desc["widths"]]
    wide = SteeringVector({1: torch.ones(GEN["steps"], desc["widths"][1])}, method="caa", concept="x",
                          model=desc)
    with pytest.raises(IncompatibleVectorError, match=r"'transformer_blocks.1.attn2' \(width \d+\)"):
        with tada.steer(model, wide, alpha=1.0):
            pass
    with pytest.raises(IncompatibleVectorError, match="width"):
        diffusers_processors(model.pipe, wide, alpha=1.0)
    renamed = copy.deepcopy(model.describe())
    renamed["layers"] = [n.replace("attn2", "cross") for n in renamed["layers"]]
    other = SteeringVector({1: torch.ones(GEN["steps"], renamed["widths"][1])}, method="caa", concept="x",
                           model=renamed)
    with pytest.raises(IncompatibleVectorError, match="transformer_blocks.1.cross"):
        with tada.steer(model, other, alpha=1.0):
            pass
    assert all(type(p).__name__ != "InterventionProcessor" for p in _processors(model).values())


def test_cli_renders_a_sweep_and_a_sheet(model, vector, tiny_model_config, tmp_path, capsys):
    from tada.cli import main
    from tada.config import ROOT

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["models"] = {"tiny": {**tiny_model_config("stable_audio"), "batch_size": 8}}
    cfg["model"] = "tiny"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    vec_path = vector.save(tmp_path / "piano.safetensors")
    out = tmp_path / "sweep"
    code = main(["steer", "--config", str(tmp_path / "config.yaml"), "--vector", str(vec_path),
                 "--alpha=-1,0,1", "--prompt", PROMPT, "--prompt", "calm music", "--out", str(out),
                 "--seed", "3"])
    assert code == 0
    wavs = sorted(p.name for p in out.glob("*.wav"))
    assert wavs == ["p00_alpha+0.wav", "p00_alpha+1.wav", "p00_alpha-1.wav",
                    "p01_alpha+0.wav", "p01_alpha+1.wav", "p01_alpha-1.wav"]
    assert (out / "sheet.png").stat().st_size > 1000
    import pandas as pd
    index = pd.read_csv(out / "index.csv")
    assert index.alpha.tolist() == [-1.0, 0.0, 1.0] * 2 and set(index.seed) == {3}
    import soundfile as sf
    zero, _ = sf.read(out / "p00_alpha+0.wav", always_2d=True)
    base = model.generate([PROMPT], seeds=[3], **GEN).audio[0].T
    np.testing.assert_allclose(zero, np.clip(base, -1, 1), atol=1e-4)
    assert main(["steer", "--config", str(tmp_path / "config.yaml"), "--vector", str(vec_path),
                 "--prompt", PROMPT, "--out", str(out), "--steps", "6"]) == 1
    assert "differs from the vector's 4" in capsys.readouterr().err
