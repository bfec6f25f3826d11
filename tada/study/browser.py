"""Headless Chromium for the page: the Debian ``chromium`` executable driven by Playwright.

Playwright's own browser download is never used: :func:`chromium_path` finds the system
browser (``$TADA_CHROMIUM``, else ``chromium`` / ``chromium-browser`` on PATH). Audio plays
without a user gesture (``--autoplay-policy=no-user-gesture-required``); as root the sandbox is
off (Chromium refuses to start otherwise).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

ARGS = ["--autoplay-policy=no-user-gesture-required", "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream"]


def chromium_path() -> str | None:
    """The Chromium executable, or None."""
    env = os.environ.get("TADA_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch(playwright: Any) -> Any:
    """A headless Chromium browser from a started ``sync_playwright()``."""
    path = chromium_path()
    if path is None:
        raise FileNotFoundError("no Chromium found: install Debian's `chromium` or set TADA_CHROMIUM")
    args = list(ARGS) + (["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])
    return playwright.chromium.launch(executable_path=path, headless=True, args=args)


def screenshot(bundle_dir: str | Path, out: str | Path, *, width: int = 1280, height: int = 900) -> Path:
    """A PNG of the bundle's first trial, mid-rating: skill chosen, sample 1 playing with its
    slider moved to +1 and its scales answered."""
    import tempfile

    from playwright.sync_api import sync_playwright

    from tada.io import atomic_path

    from .server import BackgroundServer

    with tempfile.TemporaryDirectory() as tmp, BackgroundServer(bundle_dir, Path(tmp) / "ratings.jsonl") as url:
        with sync_playwright() as pw:
            browser = launch(pw)
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url)
            page.get_by_label("3: amateur musician").check()
            page.get_by_role("button", name="Start").click()
            card = page.locator("#samples .sample").first
            card.get_by_role("button", name="Play sample 1").click()
            page.wait_for_function("window.tadaStudy.player.isPlaying()")
            slider = card.locator("input[type=range]")
            slider.focus()
            page.keyboard.press("ArrowRight")
            for scale, value in (("Seamless Edit", 4), ("Audio Quality", 3), ("Smoothness", 4)):
                card.get_by_label(f"{scale} of sample 1: {value} of 5").check()
            with atomic_path(out) as tmp_png:
                page.screenshot(path=str(tmp_png), full_page=True)
            browser.close()
    return Path(out)
