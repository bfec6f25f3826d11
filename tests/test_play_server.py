"""The playground server: routes, bad input answered 4xx with a reason (and the server keeps
serving), saving, and five concurrent clients on a real uvicorn server."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
import urllib.request

import pytest
import soundfile as sf

from tada.play.engine import MAX_PROMPT_CHARS, Catalog, Engine
from tada.play.server import MAX_BODY, PlayServer, create_app
from test_play_engine import GEN, make_run, request

pytestmark = pytest.mark.usefixtures("module_single_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("play"))


@pytest.fixture
def engine(run_dir):
    eng = Engine(run_dir[2], Catalog(run_dir[1]), model_name="embedded", **GEN)
    yield eng
    eng.close()


@pytest.fixture
def client(engine, tmp_path):
    from fastapi.testclient import TestClient

    with TestClient(create_app(engine, tmp_path / "saved")) as c:
        yield c


def test_page_menu_and_a_generation(client, tmp_path):
    page = client.get("/")
    assert page.status_code == 200 and "static/play.js" in page.text
    assert "CrossfadePlayer" in client.get("/study-static/crossfade.js").text  # the study's file, shared
    assert "crossfade.js" in client.get("/static/play.js").text
    menu = client.get("/api/menu").json()
    assert menu["default_method"] == "caa_localized" and menu["n_stops"] == 7 and menu["steps"] == GEN["steps"]
    r = client.post("/api/generate", json=request(alpha=2.0))
    assert r.status_code == 200
    body = r.json()
    assert body["first"] == 6 and [s["alpha"] for s in body["stops"]][3] == 0.0
    for stop in body["stops"]:
        wav = client.get("/" + stop["url"])
        assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
        audio, rate = sf.read(io.BytesIO(wav.content))
        assert rate == 16000 and len(audio) == 16000
    assert all(s["cached"] for s in client.post("/api/generate", json=request()).json()["stops"])
    saved = client.post("/api/save", json={"key": body["stops"][6]["key"]})
    assert saved.status_code == 201
    side = json.loads(open(saved.json()["sidecar"]).read())
    assert side["vectors"][0]["alpha"] == 2.0 and side["batch"] == {"alphas": [[2.0]], "row": 0}


BAD = [
    ({**request(), "prompt": ""}, 422, "prompt: must be a non-empty string"),
    ({**request(), "prompt": "   "}, 422, "prompt: must be a non-empty string"),
    ({**request(), "prompt": "x" * (MAX_PROMPT_CHARS + 1)}, 422, f"at most {MAX_PROMPT_CHARS}"),
    ({**request(), "prompt": 7}, 422, "prompt"),
    ({**request(), "method": "nope"}, 422, "unknown method variant 'nope'"),
    ({**request(), "axes": [{"concept": "banjo", "alpha": 0}]}, 422, "no caa_localized vector for concept 'banjo'"),
    (request(alpha=-1.6), 422, "outside tempo's range"),
    (request(alpha="loud"), 422, "axes[0].alpha: expected a finite number"),
    ({**request(), "axes": []}, 422, "axes: expected a list of 1 to 3"),
    ({**request(), "axes": [{"concept": c, "alpha": 0} for c in ("tempo", "mood", "tempo", "mood")]}, 422, "1 to 3"),
    ({**request(), "seed": -1}, 422, "seed"),
    ({**request(), "seed": True}, 422, "seed"),
    ({**request(), "extra": 1}, 422, "unknown field(s): extra"),
    ([1, 2], 422, "JSON object"),
]


def test_bad_input_is_refused_with_a_reason_and_the_server_keeps_serving(client, engine):
    for body, status, reason in BAD:
        r = client.post("/api/generate", json=body)
        assert r.status_code == status and reason in r.json()["detail"], (body, r.text)
    r = client.post("/api/generate", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not JSON" in r.json()["detail"]
    r = client.post("/api/generate", content=json.dumps(request()), headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = client.post("/api/generate", content=b" " * (MAX_BODY + 1), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert client.get("/api/clip/" + "0" * 32 + ".wav").status_code == 404
    assert client.get("/api/clip/..%2Fserver.py").status_code == 404
    assert client.post("/api/save", json={"key": "../../etc"}).status_code == 422
    assert client.post("/api/save", json={"key": "a" * 32}).status_code == 404
    assert engine.batches == 0  # nothing reached the model
    r = client.post("/api/generate", json=request())
    assert r.status_code == 200 and client.get("/" + r.json()["stops"][0]["url"]).status_code == 200


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read()


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def test_five_concurrent_clients(engine, tmp_path):
    with PlayServer(engine, tmp_path / "saved") as url:
        warm = _post(url + "api/generate", {**request(), "prompt": "a cached tune"})
        for s in warm["stops"]:
            _get(url + s["url"])
        results: dict[int, list[bytes]] = {}
        errors: list[BaseException] = []
        cached_latency: list[float] = []

        def client(i: int) -> None:
            try:
                body = _post(url + "api/generate", {**request(alpha=0.0), "prompt": f"song number {i}", "seed": i})
                results[i] = [_get(url + s["url"]) for s in body["stops"]]
            except BaseException as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        time.sleep(0.05)
        t0 = time.perf_counter()  # while the model is busy, a cached request needs no model time
        again = _post(url + "api/generate", {**request(), "prompt": "a cached tune"})
        _get(url + again["stops"][5]["url"])
        cached_latency.append(time.perf_counter() - t0)
        for t in threads:
            t.join(timeout=300)
        try:
            _post(url + "api/generate", {**request(), "prompt": ""})
        except urllib.error.HTTPError as exc:
            assert exc.code == 422
    assert not errors, errors
    assert sorted(results) == [0, 1, 2, 3, 4] and all(len(v) == 7 for v in results.values())
    assert all(sf.read(io.BytesIO(b))[1] == 16000 for v in results.values() for b in v)
    assert len({b for v in results.values() for b in v[:3]}) == 15  # different prompts, different clips
    assert engine.batches == 2 + 5 * 2 and all(again["stops"][j]["cached"] for j in range(7))
    assert cached_latency[0] < 2.0
