"""Load on a real server process over loopback: 500 submissions from 50 concurrent clients are
all stored exactly once; then the server is SIGKILLed in the middle of a second burst and every
submission that got its 2xx is in the file, which still parses line by line."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from tada.study.loadtest import ServerProcess, burst, check_file, submissions  # noqa: E402
from tada.study.plan import read_manifest  # noqa: E402
from test_study_bundle import make_bundle  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("study"))


def test_500_concurrent_submissions_then_sigkill_mid_burst(bundle, tmp_path):
    manifest = read_manifest(bundle)
    ratings = tmp_path / "ratings.jsonl"
    first = submissions(manifest, 500, tag=1)
    server = ServerProcess(bundle, ratings)
    try:
        results, _ = burst(server.url, first, clients=50)
        assert [r.status for r in results] == [201] * 500
        check = check_file(ratings, first)
        assert check == {"rows": 500, "lost": 0, "duplicated": 0, "unparsable": 0, "ends_with_newline": True}
        # the same 500 again: all duplicates, nothing written
        size = ratings.stat().st_size
        again, _ = burst(server.url, first[:100], clients=50)
        assert {r.status for r in again} == {200} and ratings.stat().st_size == size

        second = submissions(manifest, 500, tag=2)
        answered = []

        def kill_midway(result):
            answered.append(result)
            if len(answered) == 150:
                server.kill()

        results, _ = burst(server.url, second, clients=50, on_result=kill_midway)
    finally:
        server.kill()
    acked = [second[r.index] for r in results if r.status is not None and 200 <= r.status < 300]
    failed = [r for r in results if r.status is None]
    assert 100 <= len(acked) < 500 and failed, (len(acked), len(failed))
    check = check_file(ratings, first + acked)
    assert check["lost"] == 0 and check["duplicated"] == 0 and check["unparsable"] == 0
    assert check["ends_with_newline"]
    assert 500 + len(acked) <= check["rows"] <= 1000
