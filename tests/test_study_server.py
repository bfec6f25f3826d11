"""The study server: plans, good and bad submissions, idempotency, durable appends, static files.

Every refused submission must leave the ratings file byte for byte as it was.
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from tada.study.plan import participant_plan, read_manifest  # noqa: E402
from tada.study.ratings import RatingsStore, read_ratings  # noqa: E402
from tada.study.server import create_app  # noqa: E402
from test_study_bundle import PARTICIPANT, make_bundle  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("study"))


@pytest.fixture
def client(bundle, tmp_path):
    ratings = tmp_path / "ratings.jsonl"
    with TestClient(create_app(bundle, ratings, max_body=4096)) as c:
        c.ratings = ratings
        yield c


def submission(bundle: Path, participant: str = PARTICIPANT, position: int = 0, score: int = 3) -> dict:
    plan = participant_plan(read_manifest(bundle), participant)
    return {"participant": participant, "trial": plan[position]["trial"], "trial_index": position, "skill": 4,
            "samples": [{"sample": s, "listened": True, "visited": [3, 4], "seamless": score, "quality": 4,
                         "smoothness": 5} for s in plan[position]["samples"]]}


def test_plan_lists_the_participants_trials_without_method_names(client, bundle):
    r = client.get("/api/plan", params={"participant": PARTICIPANT})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    plan = r.json()
    assert plan["stops"] == 7 and len(plan["trials"]) == 2
    expected = participant_plan(read_manifest(bundle), PARTICIPANT)
    assert [[s["id"] for s in t["samples"]] for t in plan["trials"]] == [e["samples"] for e in expected]
    assert all(len(s["stops"]) == 7 for t in plan["trials"] for s in t["samples"])
    assert client.get(plan["trials"][0]["samples"][0]["stops"][0]).status_code == 200
    assert client.get("/api/plan", params={"participant": "../etc"}).status_code == 422


def test_a_good_submission_is_stored_once(client, bundle):
    body = submission(bundle)
    r = client.post("/api/submit", json=body)
    assert r.status_code == 201 and r.json()["status"] == "stored"
    rows, problems = read_ratings(client.ratings)
    assert problems == [] and len(rows) == 1
    row = rows[0]
    manifest = read_manifest(bundle)
    trial = next(t for t in manifest["trials"] if t["id"] == body["trial"])
    assert row["concept"] == trial["concept"] and row["prompt_id"] == "p000" and row["skill"] == 4
    assert row["methods"] == [trial["samples"][s["sample"]]["variant"] for s in body["samples"]]
    first = row["samples"][0]
    assert first["alphas_visited"] == [first["alphas"][3], first["alphas"][4]] and first["sample_index"] == 0
    # resubmitting the same (participant, trial), even with other scores, writes nothing
    before = client.ratings.read_bytes()
    again = client.post("/api/submit", json=submission(bundle, score=1))
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert client.ratings.read_bytes() == before
    assert client.post("/api/submit", json=submission(bundle, position=1)).status_code == 201
    assert len(read_ratings(client.ratings)[0]) == 2


def _bad_cases(bundle: Path) -> dict[str, tuple[dict | bytes, dict, int, str]]:
    good = submission(bundle)
    cases: dict[str, tuple] = {}

    def change(name, fn, status, reason):
        body = copy.deepcopy(good)
        fn(body)
        cases[name] = (body, {}, status, reason)

    change("unknown field", lambda b: b.update(extra=1), 422, "Additional properties")
    change("unknown sample field", lambda b: b["samples"][0].update(method="caa"), 422, "Additional properties")
    change("missing field", lambda b: b.pop("skill"), 422, "'skill' is a required property")
    change("score too high", lambda b: b["samples"][2].update(quality=6), 422, "samples/2/quality")
    change("score zero", lambda b: b["samples"][0].update(seamless=0), 422, "samples/0/seamless")
    change("score as text", lambda b: b["samples"][0].update(seamless="3"), 422, "not of type 'integer'")
    change("score as float", lambda b: b["samples"][0].update(smoothness=3.0), 422, "not of type 'integer'")
    change("score as bool", lambda b: b["samples"][0].update(quality=True), 422, "not of type 'integer'")
    change("listened not bool", lambda b: b["samples"][0].update(listened=1), 422, "not of type 'boolean'")
    change("skill out of range", lambda b: b.update(skill=9), 422, "skill")
    change("visited stop out of range", lambda b: b["samples"][0].update(visited=[7]), 422, "visited")
    change("bad participant", lambda b: b.update(participant="robert'); drop table"), 422, "participant")
    change("unknown trial", lambda b: b.update(trial="violin-p000"), 422, "unknown trial id")
    change("wrong position", lambda b: b.update(trial_index=1), 422, "position 0")
    change("unknown sample", lambda b: b["samples"][0].update(sample="deadbeef0000"), 422, "unknown sample ids")
    change("samples reordered", lambda b: b["samples"].reverse(), 422, "display order")
    change("sample missing", lambda b: b["samples"].pop(), 422, "display order")
    change("samples not a list", lambda b: b.update(samples={}), 422, "not of type 'array'")
    cases["not JSON"] = (b"{not json", {"Content-Type": "application/json"}, 400, "not JSON")
    cases["JSON array"] = (b"[1, 2]", {"Content-Type": "application/json"}, 422, "not of type 'object'")
    cases["wrong content type"] = (json.dumps(good).encode(), {"Content-Type": "text/plain"}, 415, "application/json")
    cases["oversized body"] = (json.dumps({**good, "pad": "x" * 5000}).encode(), {"Content-Type": "application/json"},
                               413, "at most 4096 bytes")
    return cases


def test_bad_submissions_are_refused_with_a_reason_and_write_nothing(client, bundle):
    assert client.post("/api/submit", json=submission(bundle)).status_code == 201
    before = client.ratings.read_bytes()
    for name, (body, headers, status, reason) in _bad_cases(bundle).items():
        if isinstance(body, dict):
            r = client.post("/api/submit", json=body)
        else:
            r = client.post("/api/submit", content=body, headers=headers)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert reason in r.json()["detail"], (name, r.json())
        assert client.ratings.read_bytes() == before, name


def test_oversized_chunked_body_is_refused(client, bundle):
    def chunks():
        yield b'{"participant": "'
        for _ in range(10):
            yield b"x" * 1000

    r = client.post("/api/submit", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert not client.ratings.read_bytes()


def test_only_bundle_files_are_served(client, bundle):
    assert client.get("/").status_code == 200 and "Listening study" in client.get("/").text
    assert client.get("/study.js").status_code == 200
    assert client.get("/crossfade.js").headers["content-type"].startswith(("text/javascript", "application/javascript"))
    for path in ["/manifest.json", "/../manifest.json", "/%2e%2e/manifest.json", "/audio/../../manifest.json",
                 "/audio/", "/audio", "/..%2fmanifest.json", "//etc/passwd", "/public/index.html",
                 "/docs", "/openapi.json"]:
        r = client.get(path)
        assert r.status_code == 404, (path, r.status_code)
        assert "trials" not in r.text and "<a href" not in r.text
    assert client.post("/study.js").status_code in (404, 405)


def test_symlink_out_of_the_bundle_is_not_followed(tmp_path):
    bundle = make_bundle(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (bundle / "public" / "leak.txt").symlink_to(secret)
    with TestClient(create_app(bundle, tmp_path / "r.jsonl")) as c:
        assert c.get("/leak.txt").status_code == 404


def test_server_writes_nothing_but_the_ratings_file(bundle, tmp_path):
    def snapshot(root):
        return {p: p.stat().st_mtime_ns for p in root.rglob("*")}

    before = snapshot(bundle)
    ratings = tmp_path / "ratings.jsonl"
    with TestClient(create_app(bundle, ratings)) as c:
        c.get("/api/plan", params={"participant": PARTICIPANT})
        assert c.post("/api/submit", json=submission(bundle)).status_code == 201
    assert snapshot(bundle) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ratings.jsonl"]


def test_store_recovers_from_a_torn_last_line_and_reports_it(tmp_path):
    path = tmp_path / "ratings.jsonl"
    good = {"participant": "a", "trial": "t1", "x": 1}
    path.write_text(json.dumps(good) + "\n" + '{"participant": "b", "tri')  # a writer died mid-line
    store = RatingsStore(path)
    assert ("a", "t1") in store and len(store) == 1
    assert store.append({"participant": "a", "trial": "t1"}) is False
    assert store.append({"participant": "c", "trial": "t1"}) is True
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["participant"] == "c"
    assert store.problems and store.problems[0][0] == 2
    store.close()
    reopened = RatingsStore(path)
    assert len(reopened) == 2 and [n for n, _ in reopened.problems] == [2]
    reopened.close()


def _append_many(path: str, worker: int, n: int, queue) -> None:
    store = RatingsStore(path)
    done = [store.append({"participant": f"p{k}", "trial": "t", "worker": worker, "pad": "y" * 3000})
            for k in range(n)]
    store.close()
    queue.put(sum(done))


def test_two_processes_appending_never_interleave_or_duplicate(tmp_path):
    """Both processes submit the same 40 (participant, trial) keys, rows of 3 kB: each key is
    stored exactly once and every line parses."""
    path = tmp_path / "ratings.jsonl"
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 40, queue)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    stored = queue.get(timeout=5) + queue.get(timeout=5)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    keys = [json.loads(line)["participant"] for line in lines[:-1]]
    assert stored == 40 and sorted(keys) == sorted(f"p{k}" for k in range(40))
    assert os.path.getsize(path) == sum(len(line) + 1 for line in lines[:-1])
