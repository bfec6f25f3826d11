"""Functional layers across concepts and the impact heatmap (rule choose_layers)."""
import json
import logging

from tada.figures import plot_impact_heatmap
from tada.io import rule_logging, write_json
from tada.localize import choose_layers, impact_matrix, read_impact

rule_logging(snakemake)
concepts = list(snakemake.params.concepts)
impacts = {c: read_impact(p) for c, p in zip(concepts, snakemake.input.impacts)}
summaries = {c: json.loads(open(p).read()) for c, p in zip(concepts, snakemake.input.summaries)}
chosen = choose_layers(impacts, top_k=snakemake.params.top_k, override=snakemake.params.override,
                       summaries=summaries)
chosen["model"] = snakemake.params.model
write_json(snakemake.output.layers, chosen)
names = list(next(iter(impacts.values()))["layer_name"])
plot_impact_heatmap(impact_matrix(impacts), snakemake.output.heatmap, layer_names=names,
                    chosen=chosen["layers"], title=f"{snakemake.params.model}: activation patching impact")
logging.info("functional layers %s (%s); top-2 share %s; all-layers impact %s", chosen["layers"],
             chosen["source"], chosen["top2_share"], chosen.get("all_layers_impact"))
