"""Weights identity in every artifact, and no silent no-ops (issue 11, items 1 and 3)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import tada
from tada.cache import StoreMismatchError, build_store, open_store
from tada.io import sha256_files
from tada.models import AddVector, Capture, PatchKV
from tada.steering.vectors import IncompatibleVectorError, SteeringVector
from tiny_embedded import WordEncoder, tiny_model

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED = ROOT / "data" / "embedded_model"

pytestmark = pytest.mark.usefixtures("module_single_thread")


# --------------------------------------------------------------------------------------------
# item 1: weights identity
# --------------------------------------------------------------------------------------------
def test_sha256_files_hashes_bytes_and_names(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "sub" / "b.bin"
    b.parent.mkdir()
    a.write_bytes(b"x" * 3_000_000)
    b.write_bytes(b"y")
    assert sha256_files([a]) == hashlib.sha256(a.read_bytes()).hexdigest()
    both = sha256_files([b, a], root=tmp_path)
    assert both == sha256_files([a, b], root=tmp_path)  # order of the arguments does not matter
    (tmp_path / "sub" / "c.bin").write_bytes(b"y")
    b.unlink()
    assert sha256_files([a, tmp_path / "sub" / "c.bin"], root=tmp_path) != both  # a renamed file


def _perturbed_copy(src: Path, dst: Path) -> Path:
    """A copy of a model directory whose weights differ slightly (same architecture)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    state = load_file(str(dst / "model.safetensors"))
    key = sorted(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)[0]
    state[key] = state[key] + 1e-3
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


@pytest.fixture(scope="module")
def word_encoder():
    return WordEncoder(384)


def _embedded(path: Path, encoder) -> "tada.models.embedded.EmbeddedModel":
    from tada.models.embedded import EmbeddedModel

    return EmbeddedModel.from_pretrained(path, text_encoder=encoder, steps=2, duration=0.5, batch_size=2)


def test_embedded_weights_hash_is_the_safetensors_digest(tmp_path, word_encoder):
    model = _embedded(EMBEDDED, word_encoder)
    desc = model.describe()
    assert desc["weights_sha256"] == hashlib.sha256((EMBEDDED / "model.safetensors").read_bytes()).hexdigest()
    other = _embedded(_perturbed_copy(EMBEDDED, tmp_path / "m"), word_encoder)
    assert other.describe()["weights_sha256"] != desc["weights_sha256"]
    assert {k: v for k, v in other.describe().items() if k not in ("weights_sha256", "path")} == \
        {k: v for k, v in desc.items() if k not in ("weights_sha256", "path")}


def test_store_is_rebuilt_or_refused_when_the_weights_change(tmp_path, word_encoder):
    model_dir = tmp_path / "model"
    shutil.copytree(EMBEDDED, model_dir)
    samples = pd.DataFrame({"prompt": ["a slow piano song", "a fast drum groove"], "seed": [0, 1]})
    store_dir = tmp_path / "store.zarr"
    old = _embedded(model_dir, word_encoder)
    build_store(old, samples, store_dir, chunk_samples=2, progress=False)
    old_hash = old.describe()["weights_sha256"]
    # other weights of the same architecture at the same path
    shutil.rmtree(model_dir)
    _perturbed_copy(EMBEDDED, model_dir)
    new = _embedded(model_dir, word_encoder)
    new_hash = new.describe()["weights_sha256"]
    assert new_hash != old_hash
    with pytest.raises(StoreMismatchError) as err:  # rebuild_stale: false
        build_store(new, samples, store_dir, chunk_samples=2, progress=False)
    assert "model.weights_sha256" in str(err.value) and old_hash[:20] in str(err.value)
    store = build_store(new, samples, store_dir, chunk_samples=2, progress=False, overwrite=True)
    assert store.attrs["model"]["weights_sha256"] == new_hash
    assert open_store(store_dir).attrs["model"]["weights_sha256"] == new_hash


def test_in_memory_models_hash_their_state_dict():
    a, b = tiny_model(), tiny_model()
    assert a.describe()["weights_sha256"] == b.describe()["weights_sha256"]
    c = tiny_model()
    with torch.no_grad():
        c.network.blocks[0].attn2.to_k.weight[0, 0] += 1e-3
    assert c.describe()["weights_sha256"] != a.describe()["weights_sha256"]


def _vector(desc, steps=4, layers=(0, 1)):
    g = torch.Generator().manual_seed(0)
    return SteeringVector({i: torch.randn(steps, desc["widths"][i], generator=g) for i in layers},
                          method="caa", concept="tempo", model=desc)


def test_vector_from_other_weights_is_refused_naming_both_hashes(tmp_path):
    model, other = tiny_model(), tiny_model()
    with torch.no_grad():
        other.network.blocks[1].attn2.to_v.weight.mul_(1.01)
    vec = _vector(other.describe())
    path = vec.save(tmp_path / "v.safetensors")
    mine, theirs = model.describe()["weights_sha256"], other.describe()["weights_sha256"]
    with pytest.raises(IncompatibleVectorError) as err:
        with tada.steer(model, path, alpha=1.0):
            pass
    assert mine in str(err.value) and theirs in str(err.value)
    assert SteeringVector.load(path).model["weights_sha256"] == theirs
    with tada.steer(other, path, alpha=1.0):  # its own model is fine
        pass


def test_vector_without_a_weights_hash_is_accepted_with_a_warning():
    model = tiny_model()
    desc = {k: v for k, v in model.describe().items() if k != "weights_sha256"}
    with pytest.warns(UserWarning, match="no weights_sha256"):
        with tada.steer(model, _vector(desc), alpha=1.0):
            model.generate(["a song"], seeds=[0], steps=4)


def test_diffusers_weights_hash_covers_the_weight_files(tiny_stable_audio_dir, tmp_path, monkeypatch):
    from tada.models import load_model
    from tada.models.base import weight_files_under
    from tada.testing.tiny import TINY_GENERATION

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    cfg = {"backend": "stable_audio", **TINY_GENERATION["stable_audio"]}
    model = load_model({**cfg, "path": tiny_stable_audio_dir})
    assert "HF_HUB_OFFLINE" not in os.environ  # loading is local without changing the process
    root = Path(tiny_stable_audio_dir)
    files = weight_files_under(root)
    assert files and all(f.suffix in (".safetensors", ".bin") for f in files)
    assert model.describe()["weights_sha256"] == sha256_files(files, root=root)
    copy = tmp_path / "pipe"
    shutil.copytree(root, copy)
    target = sorted(copy.rglob("*.safetensors"))[0]
    data = bytearray(target.read_bytes())
    data[-1] ^= 1  # one bit of one tensor
    target.write_bytes(bytes(data))
    assert load_model({**cfg, "path": str(copy)}).describe()["weights_sha256"] != model.describe()["weights_sha256"]
    # a pipeline built in memory is hashed by its components' tensors
    from tada.models.stable_audio import StableAudioModel

    in_memory = StableAudioModel(model.pipe, **TINY_GENERATION["stable_audio"])
    assert len(in_memory.describe()["weights_sha256"]) == 64


def test_localization_summary_and_layers_record_the_weights():
    from tada.localize import choose_layers

    impact = pd.DataFrame({"layer": [0, 1], "layer_name": ["a", "b"], "impact_mean": [0.5, 0.1],
                           "impact_stderr": [0.1, 0.1], "n": [2, 2], "n_skipped": [0, 0]})
    same = {"x": {"weights_sha256": "ab"}, "y": {"weights_sha256": "ab"}}
    assert choose_layers({"x": impact, "y": impact}, top_k=1, summaries=same)["weights_sha256"] == "ab"
    with pytest.raises(ValueError, match="different weights"):
        choose_layers({"x": impact, "y": impact}, top_k=1,
                      summaries={"x": {"weights_sha256": "ab"}, "y": {"weights_sha256": "cd"}})


def test_localize_concept_summary_has_the_weights_hash():
    from tada.localize import localize_concept
    from tiny_embedded import MeanScorer

    model = tiny_model(batch_size=8, steps=2)
    pairs = pd.DataFrame({"pair_id": ["p0"], "target": ["slow piano"], "source": ["fast drums"]})
    res = localize_concept(model, MeanScorer(), pairs, "x", layers=[0], steps=2, min_denominator=-1e9)
    assert res.summary["weights_sha256"] == model.describe()["weights_sha256"]
    assert res.summary["model"]["layers"] == model.layer_names()


# --------------------------------------------------------------------------------------------
# item 3: no silent no-ops
# --------------------------------------------------------------------------------------------
def test_per_step_vector_with_other_step_count_is_refused():
    model = tiny_model(steps=4)
    vec = _vector(model.describe(), steps=4)
    for steps in (2, 6):
        with pytest.raises(ValueError, match=rf"4 per-step vectors .* runs {steps} steps"):
            with tada.steer(model, vec, alpha=1.0):
                model.generate(["a song"], seeds=[0], steps=steps)
    iv = AddVector(dict(vec.vectors), alpha=1.0)
    with pytest.raises(ValueError, match="4 per-step vectors"):
        model.generate(["a song"], seeds=[0], steps=3, interventions=[iv])
    with tada.steer(model, vec, alpha=1.0):  # the vector's own count is fine
        model.generate(["a song"], seeds=[0], steps=4)


def test_resample_steps_interpolates_the_schedule():
    from tada.models.interventions import resample_schedule

    v = torch.tensor([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])
    np.testing.assert_allclose(resample_schedule(v, 7)[:, 0].numpy(), np.linspace(0, 3, 7), atol=1e-6)
    assert torch.equal(resample_schedule(v, 4), v)
    model = tiny_model(steps=4)
    vec = _vector(model.describe(), steps=4)
    plain = model.generate(["a song"], seeds=[0], steps=6).features
    with tada.steer(model, vec, alpha=1.0, resample_steps=True):
        steered = model.generate(["a song"], seeds=[0], steps=6).features
    assert not np.allclose(plain, steered)


def _fuse_cross_attention(model) -> None:
    """What diffusers' UNet ``fuse_qkv_projections()`` does to each cross-attention module: one
    ``to_kv`` projection, used by ``FusedAttnProcessor2_0`` instead of ``to_k``/``to_v``."""
    from diffusers.models.attention_processor import FusedAttnProcessor2_0

    for layer in model.layers:
        layer.module.fuse_projections(fuse=True)
        layer.module.set_processor(FusedAttnProcessor2_0())


def test_kv_interventions_on_fused_projections_raise_naming_the_layer(tiny_audioldm2_dir):
    from tada.models import load_model
    from tada.testing.tiny import TINY_GENERATION

    model = load_model({"backend": "audioldm2", "path": tiny_audioldm2_dir, **TINY_GENERATION["audioldm2"]})
    cache = Capture(keys_values=True, means=False)
    model.generate(["a jazz song"], [0], interventions=[cache], text_length=8)  # unfused: fine
    _fuse_cross_attention(model)
    name = model.layers[0].name
    with pytest.raises(RuntimeError, match=rf"layer 0 \('{name}'\).*to_k/to_v"):
        model.generate(["a rock song"], [0], interventions=[PatchKV(cache, layers=[0])], text_length=8)
    with pytest.raises(RuntimeError, match="fuse_qkv_projections"):
        model.generate(["a rock song"], [0], interventions=[Capture(keys_values=True)], text_length=8)
    model.generate(["a rock song"], [0], interventions=[Capture()])  # outputs only: still fine


def test_truncated_prompt_warns_once_naming_prompt_and_lengths(caplog):
    from tada.embedded.model import TextEncoder

    enc = TextEncoder()
    long = "a very slow and very sad solo piano song with soft brushed drums in a small room"
    n = enc.token_count(long)
    with caplog.at_level(logging.WARNING, logger="tada.embedded.model"):
        enc.encode([long, "short"], 8)
        enc.encode([long], 8)
    records = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(records) == 1
    assert long in records[0].getMessage() and f"{n} tokens" in records[0].getMessage() \
        and "text_length is 8" in records[0].getMessage()


def test_diffusers_module_sets_no_environment_on_import():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    code = "import os, tada.models._diffusers, tada.testing.tiny; print(os.environ.get('HF_HUB_OFFLINE'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"
