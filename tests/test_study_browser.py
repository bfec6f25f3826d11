"""The rating page in a real headless Chromium (Debian's `chromium`, driven by Playwright).

Skipped when no Chromium is installed, unless TADA_REQUIRE_BROWSER=1 (set by .ci/run), which
makes a missing browser a failure.
"""

from __future__ import annotations

import json
import os

import pytest

from tada.study.browser import chromium_path
from test_study_bundle import make_bundle

REQUIRED = os.environ.get("TADA_REQUIRE_BROWSER") == "1"


def _need(condition: bool, reason: str) -> None:
    if not condition:
        if REQUIRED:
            pytest.fail(f"{reason} (TADA_REQUIRE_BROWSER=1)")
        pytest.skip(reason)


try:
    import playwright.sync_api  # noqa: F401
    HAVE_PLAYWRIGHT = True
except ImportError:
    HAVE_PLAYWRIGHT = False

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    _need(HAVE_PLAYWRIGHT, "Playwright is not installed (pip install playwright)")
    _need(chromium_path() is not None, "no Chromium (apt-get install chromium)")
    return make_bundle(tmp_path_factory.mktemp("study"))


@pytest.fixture
def browser_page(bundle, tmp_path):
    from playwright.sync_api import sync_playwright

    from tada.study.browser import launch
    from tada.study.server import BackgroundServer

    ratings = tmp_path / "ratings.jsonl"
    with BackgroundServer(bundle, ratings) as url, sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        yield page, ratings, errors
        browser.close()


def js(page, expr):
    return page.evaluate(expr)


def test_a_participant_rates_a_trial_end_to_end(browser_page):
    page, ratings, errors = browser_page
    start = page.get_by_role("button", name="Start")
    assert start.is_disabled()
    page.get_by_label("4: trained musician").check()
    start.click()
    page.wait_for_selector("#trial:not([hidden])")
    cards = page.locator("#samples .sample")
    assert cards.count() == 7
    nxt = page.get_by_role("button", name="Submit and continue")
    assert nxt.is_disabled()
    plan = js(page, "window.tadaStudy.state.plan")
    first = plan["trials"][0]
    assert page.locator("#trial-title").inner_text().startswith("Trial 1 of 2")

    # the next trial's audio is prefetched
    second_url = plan["trials"][1]["samples"][0]["stops"][6]
    page.wait_for_function(f"window.tadaStudy.player.buffers.has({json.dumps(second_url)})")

    # a reload keeps the trial and the sample order
    page.reload()
    page.wait_for_selector("#trial:not([hidden])")
    assert js(page, "window.tadaStudy.state.plan") == plan
    assert page.locator("#trial-title").inner_text().startswith("Trial 1 of 2")

    # play sample 1: all 7 stops run, only the middle one audible
    card = cards.nth(0)
    card.get_by_role("button", name="Play sample 1").click()
    page.wait_for_function("window.tadaStudy.player.isPlaying() && window.tadaStudy.player.context.state === 'running'")
    t0 = js(page, "window.tadaStudy.player.context.currentTime")
    generation = js(page, "window.tadaStudy.player.generation")
    assert js(page, "window.tadaStudy.player.current.sources.length") == 7
    page.wait_for_timeout(300)
    gains = js(page, "window.tadaStudy.player.gains()")
    assert gains[3] == pytest.approx(1.0) and max(gains[:3] + gains[4:]) == pytest.approx(0.0)
    # moving the slider (keyboard) crossfades without restarting
    slider = card.locator("input[type=range]")
    slider.focus()
    page.keyboard.press("ArrowRight")
    assert slider.get_attribute("aria-valuetext").startswith("+1")
    page.wait_for_timeout(400)  # > 10 time constants of 30 ms
    gains = js(page, "window.tadaStudy.player.gains()")
    assert gains[4] > 0.99 and gains[3] < 0.01
    assert js(page, "window.tadaStudy.player.generation") == generation  # no restart
    assert js(page, "window.tadaStudy.player.context.currentTime") > t0
    assert card.get_by_role("button", name="Stop sample 1").get_attribute("aria-pressed") == "true"

    # the other samples: playing one stops the previous (one at a time)
    for k in range(1, 7):
        cards.nth(k).get_by_role("button", name=f"Play sample {k + 1}").click()
        page.wait_for_function(f"window.tadaStudy.player.isPlaying({json.dumps(first['samples'][k]['id'])})")
        assert page.locator("button[aria-pressed=true]").count() == 1
    page.get_by_role("button", name="Stop sample 7").click()
    assert not js(page, "window.tadaStudy.player.isPlaying()")

    # every scale but the last: Next stays disabled; the last one (keyboard) enables it
    answers = {"Seamless Edit": 4, "Audio Quality": 3, "Smoothness": 5}
    for k in range(7):
        for scale, value in answers.items():
            if (k, scale) == (6, "Smoothness"):
                continue
            cards.nth(k).get_by_label(f"{scale} of sample {k + 1}: {value} of 5").check()
    assert nxt.is_disabled()
    assert "answer 1 more scale" in page.locator("#status").inner_text()
    last = cards.nth(6).get_by_label("Smoothness of sample 7: 5 of 5")
    last.focus()
    page.keyboard.press("Space")
    assert last.is_checked() and nxt.is_enabled()

    nxt.click()
    page.wait_for_function("document.querySelector('#trial-title').innerText.startsWith('Trial 2 of 2')")
    rows = [json.loads(line) for line in ratings.read_text().splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert row["participant"] == js(page, "window.tadaStudy.state.participant")
    assert row["trial"] == first["trial"] and row["trial_index"] == 0 and row["skill"] == 4
    assert [s["sample"] for s in row["samples"]] == [s["id"] for s in first["samples"]]
    assert all(s["listened"] for s in row["samples"])
    assert row["samples"][0]["visited"] == [3, 4] and row["samples"][1]["visited"] == [3]
    assert [(s["seamless"], s["quality"], s["smoothness"]) for s in row["samples"]] == [(4, 3, 5)] * 7
    assert page.get_by_role("button", name="Submit and finish").is_disabled()
    assert errors == []


def test_the_screenshot_command_photographs_a_trial(bundle, tmp_path):
    from tada.study.browser import screenshot

    out = screenshot(bundle, tmp_path / "trial.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
