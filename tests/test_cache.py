"""Activation store: layout, values, resuming, reading helpers."""

import numpy as np
import pandas as pd
import pytest

from tada.cache import (IncompleteStoreError, StoreMismatchError, build_store, contrastive_samples,
                        open_store, write_manifest)
from tada.models.interventions import Capture
from tiny_embedded import tiny_model

KW = dict(frame_steps=[0, 2], frame_stride=2, chunk_samples=5, progress=False)


@pytest.fixture(scope="module")
def model():
    return tiny_model(batch_size=4)


@pytest.fixture(scope="module")
def samples():
    table = pd.DataFrame({"concept": "piano", "base": ["a song", "calm music", "a melody"],
                          "positive": ["a song, with piano", "calm music, with piano", "a melody, with piano"],
                          "negative": ["a song", "calm music", "a melody"]})
    return contrastive_samples(table, seeds=[0, 1])


@pytest.fixture(scope="module")
def store(model, samples, tmp_path_factory):
    path = tmp_path_factory.mktemp("cache") / "contrastive_piano.zarr"
    return build_store(model, samples, path, dtype="float32", **KW)


def test_contrastive_samples_pairs_roles(samples):
    assert len(samples) == 3 * 2 * 2
    assert list(samples.columns[:4]) == ["prompt", "seed", "role", "base"]
    pos = samples[samples.role == "pos"].set_index(["base", "seed"])
    neg = samples[samples.role == "neg"].set_index(["base", "seed"])
    assert (pos.index == neg.index).all()
    assert pos.loc[(1, 1), "prompt"] == "calm music, with piano"


def test_store_opens_in_xarray_with_named_dims(store, model, samples):
    import xarray as xr

    ds = xr.open_zarr(store.path, consolidated=False)
    n, L = len(samples), len(model.layers)
    assert ds["means"].dims == ("sample", "step", "layer", "branch", "dim")
    assert ds["means"].shape == (n, 4, L, 2, 16)
    assert ds["frames"].dims == ("sample", "frame_step", "layer", "frame", "dim")
    assert ds["frames"].shape == (n, 2, L, 4, 16)  # 8 frames, every 2nd kept
    assert ds["prompt"].dims == ("sample",)
    assert list(ds["prompt"].values) == list(samples.prompt)
    assert list(ds["role"].values) == list(samples.role)
    assert list(ds["branch"].values) == ["uncond", "cond"]
    assert list(ds["layer_name"].values) == model.layer_names()
    assert bool(ds["done"].all())
    assert ds.attrs["steps"] == 4 and ds.attrs["guidance"] == 3.0 and ds.attrs["seeds"] == [0, 1]
    assert ds.attrs["model"]["backend"] == "embedded" and len(ds.attrs["prompts_hash"]) == 64
    assert store.means.chunks[0] == 5 and store.frames.chunks[0] == 5


def test_store_values_equal_capture(store, model, samples):
    cap = Capture(frame_steps=[0, 2], frame_stride=2)
    model.generate(samples.prompt[:4].tolist(), samples.seed[:4].tolist(), interventions=[cap])
    np.testing.assert_array_equal(store.means[:4], cap.stacked_means().numpy())
    np.testing.assert_array_equal(store.frames[:4], cap.stacked_frames().numpy())
    pd.testing.assert_frame_equal(store.samples.reset_index(drop=True), samples, check_dtype=False)


def test_mean_by_and_load_means(store, samples):
    cond = store.means[:][:, :, :, 1, :]
    pos = (samples.role == "pos").to_numpy()
    np.testing.assert_allclose(store.mean_by("pos"), cond[pos].mean(axis=0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(store.mean_by("neg", branch="uncond"),
                               store.means[:][~pos, :, :, 0, :].mean(axis=0), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(store.load_means(np.flatnonzero(pos)), cond[pos])
    with pytest.raises(ValueError):
        store.mean_by("nothing")


def test_iter_frames_streams_every_vector_once(store):
    layer = 1
    batches = list(store.iter_frames(layer, batch_size=7, seed=3, buffer_blocks=2))
    assert all(len(b) == 7 for b in batches[:-1]) and 0 < len(batches[-1]) <= 7
    got = np.concatenate(batches)
    want = store.frames[:][:, :, layer].reshape(-1, 16)
    assert len(got) == len(want) == store.n_frame_vectors(layer)
    np.testing.assert_array_equal(np.unique(got, axis=0), np.unique(want, axis=0))
    again = np.concatenate(list(store.iter_frames(layer, batch_size=7, seed=3, buffer_blocks=2)))
    np.testing.assert_array_equal(got, again)
    other = np.concatenate(list(store.iter_frames(layer, batch_size=7, seed=4, buffer_blocks=2)))
    assert not np.array_equal(got, other)
    ordered = np.concatenate(list(store.iter_frames(layer, batch_size=5, shuffle=False, frame_steps=[2])))
    np.testing.assert_array_equal(ordered, store.frames[:][:, 1, layer].reshape(-1, 16))


def test_interrupted_build_resumes_to_the_same_store(model, samples, tmp_path, monkeypatch):
    reference = build_store(model, samples, tmp_path / "ref.zarr", **KW)
    calls = {"n": 0}
    real = model.generate

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # chunk 0 = two batches; die inside chunk 1
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", failing)
    path = tmp_path / "resumed.zarr"
    with pytest.raises(KeyboardInterrupt):
        build_store(model, samples, path, **KW)
    with pytest.raises(IncompleteStoreError):
        open_store(path)
    partial = open_store(path, require_complete=False)
    assert partial.done.tolist() == [True] * 5 + [False] * 7
    calls["n"] = -100
    resumed = build_store(model, samples, path, **KW)
    assert calls["n"] == -100 + 3  # only chunks 1 and 2 ran again (2 + 1 batches)
    np.testing.assert_array_equal(resumed.means[:], reference.means[:])
    np.testing.assert_array_equal(resumed.frames[:], reference.frames[:])
    assert resumed.complete and resumed.attrs["prompts_hash"] == reference.attrs["prompts_hash"]


def test_mismatched_store_is_refused(model, samples, tmp_path):
    path = tmp_path / "s.zarr"
    build_store(model, samples.iloc[:4], path, chunk_samples=4, progress=False)
    changed = samples.iloc[:4].assign(seed=9)
    with pytest.raises(StoreMismatchError, match="delete the store"):
        build_store(model, changed, path, chunk_samples=4, progress=False)
    with pytest.raises(StoreMismatchError, match="steps"):
        build_store(model, samples.iloc[:4], path, chunk_samples=4, steps=3, progress=False)
    rebuilt = build_store(model, changed, path, chunk_samples=4, progress=False, overwrite=True)
    assert rebuilt.samples.seed.tolist() == [9] * 4 and rebuilt.frames is None


def test_manifest_points_to_store(store, tmp_path):
    manifest = tmp_path / "m.json"
    info = write_manifest(store, manifest, elapsed_s=1.0)
    assert info["n_samples"] == store.n_samples and info["complete"]
    assert open_store(manifest).path.resolve() == store.path.resolve()


def test_bad_samples_rejected(model, tmp_path):
    with pytest.raises(ValueError, match="prompt"):
        build_store(model, pd.DataFrame({"text": ["a"], "seed": [0]}), tmp_path / "x.zarr")
    with pytest.raises(ValueError, match="reserved"):
        build_store(model, pd.DataFrame({"prompt": ["a"], "seed": [0], "layer": [1]}), tmp_path / "x.zarr")
