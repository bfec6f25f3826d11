"""A saved playground clip, rendered again from its JSON sidecar (``tada steer --from-sidecar``).

The sidecar names the model (with its weights hash), the prompt, seed and sampler settings, every
steering vector (file, sha256, α) and the whole batch the clip was rendered in (the α of every
row, and the clip's row). Rendering that same batch with
:func:`tada.play.engine.render_batch` on the same weights repeats the clip bit for bit; a
changed weight file or vector file is refused rather than silently giving another clip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .engine import file_sha256, render_batch

FORMAT = "tada.play.clip"


def load_sidecar(path: str | Path) -> dict[str, Any]:
    """Read and check a sidecar written by the playground's "Save"."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable JSON sidecar ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a playground sidecar (format must be {FORMAT!r})")
    for key in ("model", "prompt", "seed", "steps", "guidance", "duration", "vectors", "batch"):
        if key not in meta:
            raise ValueError(f"{path}: the sidecar lacks {key!r}")
    return meta


def regenerate(model: Any, meta: dict[str, Any]) -> tuple[np.ndarray, int]:
    """The sidecar's clip (channels, samples) and sample rate, rendered again on `model`."""
    from tada.steering.vectors import SteeringVector

    want, have = meta["model"].get("weights_sha256"), model.weights_sha256()
    if want != have:
        raise ValueError(f"the sidecar's clip was made with weights {want}, this model's are {have}")
    vectors = []
    for v in meta["vectors"]:
        digest = file_sha256(v["file"])
        if digest != v["sha256"]:
            raise ValueError(f"{v['file']}: sha256 {digest} differs from the sidecar's {v['sha256']}")
        vec = SteeringVector.load(v["file"])
        vec.check_compatible(model)
        vectors.append(vec)
    batch = meta["batch"]
    gen = render_batch(model, vectors, meta["prompt"], int(meta["seed"]), batch["alphas"],
                       steps=int(meta["steps"]), guidance=float(meta["guidance"]),
                       duration=float(meta["duration"]))
    return np.asarray(gen.audio[int(batch["row"])]), gen.sample_rate
