"""The playground page in a real headless Chromium: type a prompt, generate, move the slider
(crossfade without restart), see the spectrogram follow, save.

Skipped when no Chromium is installed, unless TADA_REQUIRE_BROWSER=1 (set by .ci/run), which
makes a missing browser a failure.
"""

from __future__ import annotations

import json
import pytest

from tada.play.engine import Catalog, Engine
from tada.study.browser import chromium_path
from test_play_engine import GEN, make_run
from test_study_browser import HAVE_PLAYWRIGHT, _need

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("module_single_thread")]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    _need(HAVE_PLAYWRIGHT, "Playwright is not installed (pip install playwright)")
    _need(chromium_path() is not None, "no Chromium (apt-get install chromium)")
    _config, results, model = make_run(tmp_path_factory.mktemp("play"))
    eng = Engine(model, Catalog(results), model_name="embedded", **GEN)
    yield eng
    eng.close()


def test_generate_move_the_slider_and_save(engine, tmp_path):
    from playwright.sync_api import sync_playwright

    from tada.play.browser import session
    from tada.play.server import PlayServer
    from tada.study.browser import launch

    saved = tmp_path / "saved"
    with PlayServer(engine, saved) as url, sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1200, "height": 820})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_function("window.tadaPlay && window.tadaPlay.state.menu !== null")
        assert page.locator("#method").input_value() == "caa_localized"

        # bad input comes back as a readable reason
        page.get_by_label("Prompt").fill("   ")
        page.get_by_role("button", name="Generate").click()
        page.wait_for_function("document.getElementById('error').textContent.length > 0")
        assert "prompt" in page.locator("#error").inner_text()

        state = session(page, "a slow jazz tune with a soft piano", concepts=2, steps_right=2)
        assert state["full"] and state["playing"] and all(state["ready"])
        assert state["stop"] == 5 and state["playerStop"] == 5
        timing = state["timings"][-1]
        assert 0 < timing["first"] <= timing["all"]
        generation = page.evaluate("window.tadaPlay.player.generation")
        gains = page.evaluate("new Promise(r => setTimeout(() => r(window.tadaPlay.player.gains()), 400))")
        assert gains[5] > 0.95 and sum(gains) == pytest.approx(1.0, abs=0.05)
        page.keyboard.press("ArrowLeft")  # crossfade, no restart
        page.wait_for_function("window.tadaPlay.player.current.stop === 4")
        assert page.evaluate("window.tadaPlay.player.generation") == generation
        assert page.locator("#stops li.current").inner_text().startswith("α")

        page.get_by_role("button", name="Save").click()
        page.wait_for_function("document.getElementById('saved').textContent.includes('.wav')")
        sidecars = list(saved.glob("*.json"))
        assert len(sidecars) == 1 and len(list(saved.glob("*.wav"))) == 1
        meta = json.loads(sidecars[0].read_text())
        assert meta["prompt"] == "a slow jazz tune with a soft piano" and len(meta["vectors"]) == 2
        assert meta["vectors"][0]["alpha"] == pytest.approx(2.0 / 3) and meta["vectors"][1]["alpha"] == 0.0
        browser.close()
    assert not errors, errors
