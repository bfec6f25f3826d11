"""Atomic file writing: an interrupted job never leaves a file that looks complete."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one step.

    The temporary name keeps the extension (libraries such as soundfile pick the format from
    it). On error the temporary file is removed and `path` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_csv(path: str | os.PathLike, frame: Any, **kwargs: Any) -> None:
    """Write a pandas DataFrame atomically (index off unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)


def write_audio(path: str | os.PathLike, audio: Any, sample_rate: int) -> None:
    """Write (channels, samples) or (samples,) float audio as WAV/FLAC (by extension)."""
    import numpy as np
    import soundfile as sf

    data = np.asarray(audio, dtype=np.float32)
    if data.ndim == 2:
        data = data.T
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(data, -1.0, 1.0), int(sample_rate))


def input_files(path: str | os.PathLike | None) -> list[str]:
    """The files a workflow rule should depend on for `path`: every file under a directory
    (hidden ones aside), sorted, or the path itself. A directory's own mtime does not change
    when a file in it is overwritten, so depending on the directory would miss new weights.
    A path that does not exist is returned as is, so the workflow reports it as missing."""
    if not path:
        return []
    p = Path(path)
    if not p.is_dir():
        return [str(p)]
    files = sorted(str(f) for f in p.rglob("*")
                   if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts))
    return files or [str(p)]


def _json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars/arrays, torch tensors and paths."""
    import sys

    import numpy as np

    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    torch = sys.modules.get("torch")  # never imported just for this check
    if torch is not None and isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, (Path, os.PathLike)):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_files(paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None,
                 chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of files' contents, read in chunks (weights of any size).

    One file and no `root`: the plain digest of its bytes (what ``sha256sum`` prints). Otherwise
    the files are taken in the order of their names relative to `root` (or their full names),
    and each name is hashed before its bytes, so renaming or moving a file changes the digest.
    """
    files = [Path(p) for p in paths]
    if not files:
        raise ValueError("sha256_files needs at least one file")
    named = root is not None or len(files) > 1

    def _name(p: Path) -> str:
        return p.relative_to(root).as_posix() if root is not None else p.as_posix()

    digest = hashlib.sha256()
    for p in sorted(files, key=_name):
        if named:
            digest.update(_name(p).encode("utf-8") + b"\0")
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(chunk_size), b""):
                digest.update(block)
    return digest.hexdigest()


def replace_section(path: str | os.PathLike, start: str, end: str, text: str,
                    default_head: str = "# Benchmarks\n") -> None:
    """Replace what lies between the marker lines `start` and `end` of a text file with `text`
    (markers kept), or append the marked block when the file lacks it; written atomically."""
    p = Path(path)
    body = p.read_text() if p.exists() else default_head
    block = f"{start}\n{text}{end}\n"
    if start in body and end in body:
        head, rest = body.split(start, 1)
        _, tail = rest.split(end, 1)
        body = head + block + tail.lstrip("\n")
    else:
        body = body.rstrip("\n") + "\n\n" + block
    write_text(p, body)


def replace_subsection(path: str | os.PathLike, section: str, title: str, lines: list[str],
                       default_head: str = "# Benchmarks\n") -> None:
    """Replace (or add) the block headed `title` (a ``### `` line) inside the ``## `` `section`
    of a Markdown file, adding the section when missing; written atomically."""
    p = Path(path)
    text = p.read_text() if p.exists() else default_head
    if section not in text:
        text = text.rstrip("\n") + f"\n\n{section}\n"
    start = text.index(section)
    end = text.find("\n## ", start + 1)
    end = len(text) if end < 0 else end + 1
    body = text[start:end].rstrip("\n") + "\n"
    block = title + "\n" + "\n".join(lines) + "\n"
    if title in body:
        i = body.index(title)
        j = body.find("\n### ", i + 1)
        body = body[:i] + block + ("" if j < 0 else "\n" + body[j + 1:])
    else:
        body += "\n" + block
    rest = text[end:]
    write_text(p, text[:start] + body + ("\n" + rest if rest else ""))


def rule_logging(snakemake: Any) -> None:
    """Send everything a workflow script says to its rule's ``log:`` file (the first one).

    `logging` records, Python warnings, library output on stderr and the traceback of an
    uncaught exception all land in the log, so a cluster job's failure can be read afterwards.
    Sets torch's thread count to the rule's ``threads`` when torch is already imported.
    """
    import logging
    import sys
    import traceback
    import warnings

    logs = list(getattr(snakemake, "log", []) or [])
    if not logs:
        return
    path = Path(logs[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "a", buffering=1)  # line-buffered: a killed job keeps what it wrote
    sys.stderr = stream
    logging.basicConfig(stream=stream, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    warnings.simplefilter("default")

    def _hook(kind, value, tb):
        stream.write("".join(traceback.format_exception(kind, value, tb)))
        stream.flush()
        sys.__excepthook__(kind, value, tb)

    sys.excepthook = _hook
    if "torch" in sys.modules and getattr(snakemake, "threads", None):
        sys.modules["torch"].set_num_threads(int(snakemake.threads))
