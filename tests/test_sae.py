"""BatchTopK SAE: sparsity rules, decoder constraint, training on a planted dictionary, auxiliary
loss, metrics, files, TF-IDF feature choice, and training streamed from a real store."""

import numpy as np
import pandas as pd
import pytest
import torch

from tada.steering import features
from tada.steering.sae import (BatchTopKSAE, SAEConfig, SAETrainer, evaluate, shuffled_batches,
                               train_layer_sae, train_sae)


pytestmark = pytest.mark.usefixtures("module_single_thread")


def planted(n=3000, d=16, n_atoms=32, k=3, seed=0):
    """Sparse combinations of a random unit dictionary plus an offset."""
    rng = np.random.default_rng(seed)
    atoms = rng.normal(size=(n_atoms, d))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    codes = np.zeros((n, n_atoms))
    for i in range(n):
        codes[i, rng.choice(n_atoms, k, replace=False)] = rng.uniform(0.5, 2.0, k)
    return (codes @ atoms + 0.3).astype(np.float32) * 0.05, atoms


def test_batch_topk_keeps_k_times_batch_and_topk_per_sample():
    acts = torch.rand(5, 40)
    z = BatchTopKSAE.batch_topk(acts, 3)
    assert int((z > 0).sum()) == 15
    assert z.max() == acts.max() and set(z[z > 0].tolist()) <= set(acts.flatten().tolist())
    per = BatchTopKSAE.topk(acts, 3)
    assert ((per > 0).sum(dim=1) == 3).all()


def test_training_recovers_a_planted_dictionary_with_unit_decoder_columns():
    x, _ = planted()
    cfg = SAEConfig(expansion=4, k=3, epochs=30, batch_size=128, lr=3e-3, seed=0, dead_after=2000)
    rng = np.random.default_rng(0)

    def one_pass(epoch):
        order = rng.permutation(len(x))
        return (x[order[p:p + 128]] for p in range(0, len(x), 128))

    sae, hist = train_sae(one_pass, d_in=16, config=cfg)
    norms = sae.W_dec.detach().norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    assert hist.steps == 30 * 24 and hist.mse[-1] < hist.mse[0] / 3
    m = evaluate(sae, [x[:1000], x[1000:]])
    assert m["samples"] == 3000 and m["fvu"] < 0.2
    assert m["mean_l0"] == pytest.approx(3.0)
    assert 0.0 <= m["dead_fraction"] < 1.0 and m["dense_fraction"] < 0.5


def test_auxiliary_loss_acts_on_dead_features_and_metrics_count_dense_and_dead():
    x, _ = planted(n=600)
    cfg = SAEConfig(expansion=4, k=2, batch_size=100, dead_after=150, aux_k=8, seed=1)
    trainer = SAETrainer(BatchTopKSAE(16, 64, 2, seed=1), cfg)
    stats = [trainer.step(torch.from_numpy(x[i:i + 100])) for i in range(0, 600, 100)]
    assert stats[0]["aux"] == 0.0                       # nothing is dead yet
    assert any(s["aux"] > 0 and s["dead_fraction"] > 0 for s in stats[2:])
    sae = trainer.sae
    with torch.no_grad():
        sae.b_enc[5] = 1e3                               # feature 5 fires on every sample
        sae.b_enc[6:] = -1e3                             # features 6.. never fire
    m = evaluate(sae, [x], dense_threshold=0.5)
    assert m["dense_fraction"] == pytest.approx(1 / 64)
    assert m["dead_fraction"] >= 58 / 64


def test_sae_file_roundtrip_and_encode_modes(tmp_path):
    x, _ = planted(n=300)
    trainer = SAETrainer(BatchTopKSAE(16, 48, 4), SAEConfig(k=4))
    for i in range(0, 300, 100):
        trainer.step(torch.from_numpy(x[i:i + 100]))
    sae = trainer.sae.eval()
    sae.save(tmp_path / "layer3.safetensors", meta={"layer": 3})
    back, meta = BatchTopKSAE.load(tmp_path / "layer3.safetensors")
    assert meta["layer"] == 3 and meta["n_features"] == 48
    xt = torch.from_numpy(x[:50])
    for mode in ("topk", "batchtopk", "threshold"):
        torch.testing.assert_close(back.encode(xt, mode), sae.encode(xt, mode))
    assert float(back.threshold) > 0
    with pytest.raises(ValueError, match="mode"):
        sae.encode(xt, "nope")


def test_shuffled_batches_emit_every_row_once():
    blocks = [np.arange(i * 100, (i + 1) * 100, dtype=np.float32)[:, None] for i in range(3)]
    sources = [lambda b=b: (b[j:j + 30] for j in range(0, 100, 30)) for b in blocks]
    out = np.concatenate(list(shuffled_batches(sources, batch_size=64, seed=0, buffer_batches=2)))
    assert sorted(out[:, 0].tolist()) == list(range(300))
    assert out[:64, 0].tolist() != sorted(out[:64, 0].tolist())


def test_tfidf_scores_pick_the_concept_feature_and_nearest_frame_steps():
    mean_pos = np.array([1.0, 1.0, 0.2, 0.0])
    mean_neg = np.array([1.0, 0.0, 0.0, 0.0])
    s = features.tfidf(mean_pos, mean_neg, eps=1e-6)
    assert s.argmax() == 1 and s[3] == 0
    assert s[0] == pytest.approx(np.log(2.0), rel=1e-5)
    np.testing.assert_array_equal(features.nearest_frame_step(7, [0, 3, 6]), [0, 0, 1, 1, 1, 2, 2])
    stats = {"mean_pos": mean_pos[None, None].repeat(2, 0), "mean_neg": mean_neg[None, None].repeat(2, 0),
             "frame_steps": [0, 4], "layers": [2], "concept": "c"}
    dec = torch.nn.functional.normalize(torch.randn(4, 5), dim=1)
    model = {"backend": "x", "layers": ["a", "b", "c"], "widths": [5, 5, 5]}
    vec = features.sae_vector([(stats, 1)], {2: dec}, [2], n_steps=6, n_features=2, concept="c", model=model)
    assert vec.info["features"]["2"] == [[1, 2], [1, 2]]
    torch.testing.assert_close(vec.vectors[2], (dec[1] + dec[2]).expand(6, 5))
    neg = features.sae_vector([(stats, -1)], {2: dec}, [2], n_steps=6, n_features=1, concept="c", model=model)
    assert neg.info["features"]["2"][0] == [0]


def test_train_layer_sae_streams_from_stores_and_scores_features(tmp_path):
    from tada.cache import build_store, contrastive_samples, open_store
    from tiny_embedded import tiny_model

    model = tiny_model(batch_size=8, depth=2, steps=3)
    stores = []
    for concept, word in (("piano", "piano"), ("violin", "violin")):
        table = pd.DataFrame({"concept": concept, "base": ["a song", "calm music", "a melody", "a pop song"],
                              "positive": [f"{b}, with {word}" for b in ["a song", "calm music", "a melody", "a pop song"]],
                              "negative": ["a song", "calm music", "a melody", "a pop song"]})
        path = tmp_path / f"contrastive_{concept}.zarr"
        build_store(model, contrastive_samples(table, [0]), path, frame_steps=[0, 2], frame_stride=1,
                    dtype="float32", chunk_samples=4, progress=False)
        stores.append(open_store(path))
    cfg = SAEConfig(expansion=2, k=4, epochs=3, batch_size=64, lr=1e-3, dead_after=500)
    sae, hist, metrics = train_layer_sae(stores, 1, cfg, holdout=0.25)
    frames = stores[0].attrs["frame_counts"][1]
    n_train = sum(len(s.samples) - 2 for s in stores) * 2 * frames   # 2 held out per store, 2 frame steps
    assert hist.samples == 3 * n_train
    assert metrics["evaluated_on"] == "held-out samples" and metrics["samples"] == 2 * 2 * 2 * frames
    assert 0 <= metrics["fvu"] < 1.5 and metrics["mean_l0"] <= 4
    stats = features.feature_stats(stores[0], {1: sae})
    assert stats["mean_pos"].shape == (2, 1, 32) and stats["frame_steps"] == [0, 2]
    features.save_feature_stats(tmp_path / "s.safetensors", stats, {"concept": "piano"})
    back = features.load_feature_stats(tmp_path / "s.safetensors")
    np.testing.assert_allclose(back["mean_pos"], stats["mean_pos"], rtol=1e-6)
    assert back["concept"] == "piano" and back["layers"] == [1]
