"""The playground page in headless Chromium (the study's launcher): a scripted session and a
screenshot for the docs (``tada play --screenshot PNG``)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tada.study.browser import launch

from .engine import Engine
from .server import PlayServer


def session(page: Any, prompt: str, *, concepts: int = 1, steps_right: int = 2, timeout_ms: int = 120_000) -> dict:
    """Type `prompt`, add concepts up to `concepts`, Generate, wait for every stop, move the lead
    slider `steps_right` stops right; returns ``window.tadaPlay.state`` as JSON."""
    page.wait_for_function("window.tadaPlay && window.tadaPlay.state.menu !== null")
    page.get_by_label("Prompt").fill(prompt)
    for _ in range(concepts - 1):
        page.get_by_role("button", name="Add concept").click()
    page.get_by_role("button", name="Generate").click()
    page.wait_for_function("window.tadaPlay.state.full", timeout=timeout_ms)
    slider = page.get_by_label("alpha of concept 1")
    slider.focus()
    for _ in range(steps_right):
        page.keyboard.press("ArrowRight")
    page.wait_for_function("document.getElementById('spectrogram').dataset.stop === String(window.tadaPlay.state.stop)")
    return page.evaluate("""() => { const s = window.tadaPlay.state;
        return {stop: s.stop, full: s.full, timings: s.timings, ready: s.ready,
                playing: window.tadaPlay.player.isPlaying(), playerStop: window.tadaPlay.player.current?.stop}; }""")


def screenshot(engine: Engine, out: str | Path, *, prompt: str = "an upbeat pop song with piano and drums",
               concepts: int = 2, width: int = 1200, height: int = 820) -> Path:
    """A PNG of the page after a generation, the lead slider moved to a steered stop."""
    from playwright.sync_api import sync_playwright

    from tada.io import atomic_path

    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp, PlayServer(engine, tmp) as url, sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(url)
        session(page, prompt, concepts=concepts)
        page.wait_for_timeout(300)
        with atomic_path(out) as path:
            page.screenshot(path=str(path), full_page=True)
        browser.close()
    return out
