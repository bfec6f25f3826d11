"""Cache the cross-attention activations of one contrastive promptset (rule cache_activations)."""
import logging
import time

import pandas as pd
import torch

from tada.cache import build_store, contrastive_samples, write_manifest
from tada.io import rule_logging
from tada.models import load_model

rule_logging(snakemake)
cfg, mcfg = snakemake.params.cache, snakemake.params.model
samples = contrastive_samples(pd.read_csv(snakemake.input.prompts, keep_default_na=False), cfg["seeds"])
model = load_model(mcfg, key=f"models.{snakemake.config['model']}")
logging.info("model %s, %d samples -> %s", model.backend, len(samples), snakemake.params.store)
t0 = time.perf_counter()
store = build_store(model, samples, snakemake.params.store, frame_steps=cfg["frame_steps"],
                    frame_stride=cfg["frame_stride"], dtype=cfg["dtype"],
                    chunk_samples=cfg["chunk_samples"], steps=mcfg.get("steps"),
                    guidance=mcfg.get("guidance"), duration=mcfg.get("duration"),
                    overwrite=cfg.get("rebuild_stale", False))
info = write_manifest(store, snakemake.output.manifest, elapsed_s=round(time.perf_counter() - t0, 2))
logging.info("done: %s", info)
