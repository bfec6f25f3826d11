"""SAE of one layer trained on every steering concept's per-frame activations (rule sae_train),
or the metrics of all layers gathered into one CSV (rule sae_metrics)."""
import logging

import pandas as pd
import torch

from tada.io import rule_logging, write_csv

rule_logging(snakemake)
if snakemake.rule == "sae_metrics":
    table = pd.concat([pd.read_csv(p) for p in snakemake.input], ignore_index=True)
    write_csv(snakemake.output[0], table.sort_values("layer"))
    logging.info("\n%s", table.to_string(index=False))
else:
    from tada.steering.build import build_sae

    torch.set_num_threads(snakemake.threads)
    row = build_sae(snakemake.input.manifests, int(snakemake.wildcards.layer), snakemake.params.sae,
                    snakemake.output.weights, snakemake.output.metrics, device=snakemake.params.device)
    logging.info("trained: %s", row)
