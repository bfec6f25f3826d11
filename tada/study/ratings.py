"""Submissions: their schema, the durable ratings file, and its reader.

A submission is one trial of one participant (JSON, :func:`submission_schema`): the
participant's id, the trial id and its position in the participant's plan, the musical skill
(1–5), and per sample, in display order, whether it was played, which slider stops were
visited while it played, and the three 1–5 scores (Seamless Edit, Audio Quality, Smoothness).
:func:`validate_submission` checks it against the schema and against the participant's plan
(the trial, its position and its exact samples), and turns it into a row with the server-side
facts added (concept, prompt, each sample's variant, family, layer set and α stops).

The ratings file is JSON Lines, one row per accepted (participant, trial). :class:`RatingsStore`
appends rows with one ``write`` on an ``O_APPEND`` descriptor under an exclusive ``flock``
(one writer thread at a time inside the process), then ``fsync``\\ s before the callers answer,
so rows never interleave, whichever process writes, and a row that was acknowledged survives
the server being killed. Rows submitted while a write is under way are written together by the
next one (group commit: one fsync for the lot), which keeps the fsync cost from serialising
the submissions. Before writing it reads what other processes appended since its last
look, so a second submission of the same (participant, trial) is refused as a duplicate even
across processes. A line left unfinished by a writer that died mid-write is closed off (the next
row starts on a new line) and reported by the reader, never glued to a good row.

:func:`read_ratings` reads a ratings file back: good rows, and every malformed line with its
number and the reason.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from .plan import PARTICIPANT, participant_plan

log = logging.getLogger(__name__)

SCALES = ("seamless", "quality", "smoothness")
SCALE_NAMES = {"seamless": "Seamless Edit", "quality": "Audio Quality", "smoothness": "Smoothness"}


class SubmissionError(ValueError):
    """A refused submission: `status` is the HTTP status, the message the reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = int(status)


def submission_schema(stops: int, max_samples: int = 64) -> dict[str, Any]:
    """JSON schema of a submission for a bundle with `stops` α stops per sample."""
    score = {"type": "integer", "minimum": 1, "maximum": 5}
    sample = {"type": "object", "additionalProperties": False,
              "required": ["sample", "listened", "visited", *SCALES],
              "properties": {"sample": {"type": "string", "minLength": 1, "maxLength": 64},
                             "listened": {"type": "boolean"},
                             "visited": {"type": "array", "uniqueItems": True, "maxItems": int(stops),
                                         "items": {"type": "integer", "minimum": 0, "maximum": int(stops) - 1}},
                             **{s: score for s in SCALES}}}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
            "additionalProperties": False, "required": ["participant", "trial", "trial_index", "skill", "samples"],
            "properties": {"participant": {"type": "string", "pattern": PARTICIPANT.pattern},
                           "trial": {"type": "string", "minLength": 1, "maxLength": 200},
                           "trial_index": {"type": "integer", "minimum": 0},
                           "skill": {"type": "integer", "minimum": 1, "maximum": 5},
                           "samples": {"type": "array", "minItems": 1, "maxItems": int(max_samples), "items": sample}}}


class SubmissionValidator:
    """Checks submissions for one bundle's manifest and makes their rows."""

    def __init__(self, manifest: Mapping[str, Any]):
        import jsonschema

        self.manifest = manifest
        self.trials = {t["id"]: t for t in manifest["trials"]}
        schema = submission_schema(int(manifest["settings"]["stops"]))
        # strict integers: JSON schema counts 3.0 as an integer, a rating of 3.0 is refused here
        strict = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
            "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool))
        cls = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=strict)
        self._validator = cls(schema)

    def __call__(self, body: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SubmissionError(400, f"the body is not JSON: {exc}") from None
        errors = sorted(self._validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            err = errors[0]
            where = "/".join(str(p) for p in err.absolute_path) or "<body>"
            raise SubmissionError(422, f"{where}: {err.message}")
        return self.row(doc)

    def row(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """The row of a schema-valid submission, checked against the participant's plan."""
        plan = participant_plan(self.manifest, doc["participant"])
        order = {p["trial"]: i for i, p in enumerate(plan)}
        if doc["trial"] not in order:
            raise SubmissionError(422, f"trial: unknown trial id {doc['trial']!r}")
        position = order[doc["trial"]]
        if doc["trial_index"] != position:
            raise SubmissionError(422, f"trial_index: trial {doc['trial']!r} is at position {position} of this "
                                       f"participant's plan, not {doc['trial_index']}")
        expected = plan[position]["samples"]
        got = [s["sample"] for s in doc["samples"]]
        if got != expected:
            unknown = sorted(set(got) - set(expected))
            reason = (f"unknown sample ids {unknown}" if unknown else
                      f"expected the trial's {len(expected)} samples in display order")
            raise SubmissionError(422, f"samples: {reason}")
        trial = self.trials[doc["trial"]]
        samples = []
        for k, s in enumerate(doc["samples"]):
            meta = trial["samples"][s["sample"]]
            samples.append({"sample": s["sample"], "sample_index": k, "variant": meta["variant"],
                            "family": meta["family"], "layer_set": meta["layer_set"], "alphas": meta["alphas"],
                            "flat": meta["flat"], "visited": sorted(s["visited"]),
                            "alphas_visited": [meta["alphas"][i] for i in sorted(s["visited"])],
                            "listened": s["listened"], **{name: s[name] for name in SCALES}})
        return {"participant": doc["participant"], "trial": doc["trial"], "trial_index": doc["trial_index"],
                "skill": doc["skill"], "received": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "bundle": self.manifest["id"], "concept": trial["concept"], "prompt_id": trial["prompt_id"],
                "prompt": trial["prompt"], "methods": [s["variant"] for s in samples], "samples": samples}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class _Pending:
    """One row waiting for its write."""

    __slots__ = ("key", "line", "done", "stored", "error")

    def __init__(self, key: tuple[str, str], line: bytes):
        self.key, self.line = key, line
        self.done, self.stored, self.error = False, False, None


class RatingsStore:
    """Append-only, durable, duplicate-free ratings file (module doc)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"ratings file {self.path}: its folder does not exist")
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if created:  # make the new name itself durable
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._flushing = False
        self._seen: set[tuple[str, str]] = set()
        self._offset, self._lines, self._clean = 0, 0, True
        self.problems: list[tuple[int, str]] = []
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            self._catch_up()
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        if self.problems:
            log.warning("%s: %d malformed line(s) kept as they are: %s", self.path, len(self.problems),
                        ", ".join(str(n) for n, _ in self.problems[:20]))

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._seen

    def _catch_up(self) -> None:
        """Read the lines appended since the last look (by any process); lock held."""
        size = os.fstat(self._fd).st_size
        if size <= self._offset:
            return
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read(size - self._offset)
        *lines, tail = data.split(b"\n")
        for raw in lines:
            self._lines += 1
            try:
                doc = json.loads(raw)
                self._seen.add((str(doc["participant"]), str(doc["trial"])))
            except (ValueError, KeyError, TypeError) as exc:
                self.problems.append((self._lines, f"{type(exc).__name__}: {exc}"))
        self._offset += len(data) - len(tail)
        self._clean = not tail

    def append(self, row: Mapping[str, Any]) -> bool:
        """Append `row` durably; False (nothing written) when its (participant, trial) is stored.

        Group commit: the rows of the threads that are waiting while a write is under way go out
        together in the next write, with one fsync; each call returns once its own row is on disk.
        """
        entry = _Pending((str(row["participant"]), str(row["trial"])),
                         (json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n").encode())
        with self._cond:
            self._queue.append(entry)
            while not entry.done:
                if self._flushing:
                    self._cond.wait()
                    continue
                self._flushing, batch, self._queue = True, self._queue, []
                self._cond.release()
                try:
                    self._flush(batch)
                finally:
                    self._cond.acquire()
                    self._flushing = False
                    self._cond.notify_all()
        if entry.error is not None:
            raise entry.error
        return entry.stored

    def _flush(self, batch: list["_Pending"]) -> None:
        """Write the new rows of `batch` in one write and one fsync, under the file lock."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                self._catch_up()
                data, keys = [], set()
                for entry in batch:
                    entry.stored = entry.key not in self._seen and entry.key not in keys
                    if entry.stored:
                        keys.add(entry.key)
                        data.append(entry.line)
                if data:
                    _write_all(self._fd, (b"" if self._clean else b"\n") + b"".join(data))
                    os.fsync(self._fd)
                    self._catch_up()
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        except BaseException as exc:  # every waiting submission of the batch learns of it
            for entry in batch:
                entry.stored, entry.error = False, exc
        for entry in batch:
            entry.done = True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


# ----- reading back -------------------------------------------------------------------------------
ROW_KEYS = ("participant", "trial", "trial_index", "skill", "concept", "prompt_id", "samples")
SAMPLE_KEYS = ("sample", "variant", "family", "layer_set", "listened", *SCALES)


def _row_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return f"a JSON {type(doc).__name__}, not an object"
    missing = [k for k in ROW_KEYS if k not in doc]
    if missing:
        return f"missing {missing}"
    if not isinstance(doc["samples"], list) or not doc["samples"]:
        return "samples is not a non-empty list"
    for k, s in enumerate(doc["samples"]):
        if not isinstance(s, dict) or any(key not in s for key in SAMPLE_KEYS):
            return f"sample {k} lacks one of {list(SAMPLE_KEYS)}"
        bad = [n for n in SCALES if not (isinstance(s[n], int) and not isinstance(s[n], bool) and 1 <= s[n] <= 5)]
        if bad:
            return f"sample {k}: {bad} not an integer 1-5"
        if not isinstance(s["listened"], bool):
            return f"sample {k}: listened is not true/false"
    return None


def read_ratings(path: str | Path) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """(good rows with their line number under ``"line"``, [(line number, reason)] of the bad
    ones). Blank lines are skipped; a repeated (participant, trial) keeps its first row and
    reports the others."""
    rows, problems, first = [], [], {}
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                doc = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                problems.append((number, f"not JSON ({exc})"))
                continue
            reason = _row_problem(doc)
            if reason:
                problems.append((number, reason))
                continue
            key = (str(doc["participant"]), str(doc["trial"]))
            if key in first:
                problems.append((number, f"repeats (participant, trial) of line {first[key]}"))
                continue
            first[key] = number
            rows.append({**doc, "line": number})
    return rows, problems
