"""Each participant's plan: trial order, the drawn method families and the sample order.

The draw follows the paper's appendix I: per trial the ``always`` samples (SAE) plus
``families_per_trial`` of the other families, chosen uniformly without replacement, each with
its standard and its localized sample; then the trial's samples are shuffled, and so are the
trials. Everything is drawn from a generator seeded by HMAC-SHA256(bundle salt, participant id),
so a participant gets the same plan on every request (and after a server restart), while the
plan of one participant says nothing about another's. The page also keeps its plan in
localStorage.

What the browser sees (:func:`public_plan`) is the anonymous part only: trial ids, the
concept's name, its +/− hints, the prompt, and per sample an opaque id and its stops' audio
URLs. Variant and family names stay in the manifest on the server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
from pathlib import Path
from typing import Any, Mapping

FORMAT = "tada.study.bundle"
#: a participant id: a UUID as the page makes it (crypto.randomUUID)
PARTICIPANT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def read_manifest(bundle_dir: str | Path) -> dict[str, Any]:
    """The manifest of a bundle, checked."""
    path = Path(bundle_dir) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{bundle_dir}: not a study bundle (no manifest.json); build one with "
                                f"`snakemake study_bundle` or `tada study bundle`")
    doc = json.loads(path.read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path}: format {doc.get('format')!r}, expected {FORMAT!r}")
    if not doc.get("trials"):
        raise ValueError(f"{path}: the bundle has no trials")
    return doc


def _rng(manifest: Mapping[str, Any], participant: str) -> random.Random:
    digest = hmac.new(str(manifest["salt"]).encode(), participant.encode(), hashlib.sha256).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def participant_plan(manifest: Mapping[str, Any], participant: str) -> list[dict[str, Any]]:
    """[{trial: id, samples: [sample ids in display order]}] in the participant's trial order."""
    rng = _rng(manifest, participant)
    k = int(manifest["settings"]["families_per_trial"])
    trials = list(manifest["trials"])
    rng.shuffle(trials)
    out = []
    for t in trials:
        families = sorted(t["families"])
        drawn = rng.sample(families, min(k, len(families)))
        ids = list(t["always"]) + [sid for f in drawn for sid in t["families"][f]]
        rng.shuffle(ids)
        out.append({"trial": t["id"], "samples": ids})
    return out


def public_plan(manifest: Mapping[str, Any], participant: str) -> dict[str, Any]:
    """The plan as the page gets it: nothing that names a method."""
    by_id = {t["id"]: t for t in manifest["trials"]}
    trials = []
    for entry in participant_plan(manifest, participant):
        t = by_id[entry["trial"]]
        trials.append({"trial": t["id"], "concept": t["concept_name"], "hint_pos": t["hint_pos"],
                       "hint_neg": t["hint_neg"], "prompt": t["prompt"], "loop_seconds": t["loop_seconds"],
                       "samples": [{"id": sid, "stops": list(t["samples"][sid]["files"])}
                                   for sid in entry["samples"]]})
    return {"bundle": manifest["id"], "participant": participant,
            "stops": int(manifest["settings"]["stops"]), "trials": trials}
