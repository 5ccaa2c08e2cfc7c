"""Render an HTML report in a real headless Chromium (Playwright, the system's browser), offline.

Why a real browser: a report is only good if it opens: every image decodes, nothing is fetched
from the network, and the page is not blank. Playwright drives the Debian `chromium` package
through `executable_path`, so no browser is downloaded. Every request that is not file: or data:
is aborted and counted as a failure.

    page = render("out/report.html", screenshot="out/report.png")
    assert_renders(page, images=4)

Chromium comes from Debian (`apt-get install chromium`, see .ci/run) or $AURORAHASH_CHROMIUM.
Where it is missing the tests skip, except under CI=true, where it must be there.
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
IMAGES_JS = """() => [...document.images].map(i => ({
    alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight,
    shown: i.getBoundingClientRect().width, src: i.src.slice(0, 30)}))"""


def chromium_path() -> str | None:
    env = os.environ.get("AURORAHASH_CHROMIUM")
    if env:
        return env
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def _missing(reason: str):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI installs it: .ci/run)")
    pytest.skip(reason)


def require_browser() -> str:
    """The Chromium executable, or skip (fail under CI=true) with the reason."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("playwright is not installed: pip install -e '.[dev]'")
    path = chromium_path()
    if path is None:
        _missing("Chromium not found: apt-get install chromium (or set AURORAHASH_CHROMIUM)")
    return path


@dataclass
class Page:
    """What the browser saw."""

    failed: list[str] = field(default_factory=list)  # failed or blocked requests
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    images: list[dict] = field(default_factory=list)
    text: str = ""
    screenshot: bytes = b""


def render(html: str | Path, screenshot: str | Path | None = None, width: int = 1280) -> Page:
    """Open `html` from a file:// URL with the network blocked; a full-page screenshot."""
    from playwright.sync_api import sync_playwright

    page_info = Page()
    url = Path(html).resolve().as_uri()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=require_browser(),
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            ctx = browser.new_context(viewport={"width": width, "height": 900}, offline=True)
            page = ctx.new_page()

            def block(route):
                if route.request.url.startswith(("file:", "data:")):
                    route.continue_()
                else:
                    page_info.failed.append(f"blocked: {route.request.url}")
                    route.abort()

            page.route("**/*", block)
            page.on("requestfailed", lambda r: page_info.failed.append(f"{r.url}: {r.failure}"))
            page.on("console", lambda m: m.type == "error" and page_info.errors.append(m.text))
            page.on("pageerror", lambda e: page_info.errors.append(str(e)))
            page.goto(url, wait_until="load")
            page_info.images = page.evaluate(IMAGES_JS)
            page_info.text = page.inner_text("body")
            page_info.screenshot = page.screenshot(full_page=True)
        finally:
            browser.close()
    if screenshot:
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        Path(screenshot).write_bytes(page_info.screenshot)
    return page_info


def ink_fraction(png: bytes) -> float:
    """Share of the screenshot's pixels that are not (near) white: ~0 for a blank page."""
    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    return float((grey < 235).mean())


def assert_renders(page: Page, images: int, min_text: int = 200) -> None:
    """Loaded offline with no failed request or error, `images` decoded and shown, not blank."""
    assert not page.failed, f"failed requests: {page.failed}"
    assert not page.errors, f"page errors: {page.errors}"
    assert len(page.images) == images, f"{len(page.images)} images, {images} expected"
    bad = [i for i in page.images if not (i["complete"] and i["width"] > 0 and i["shown"] > 0)]
    assert not bad, f"images not decoded or not shown: {bad}"
    assert len(page.text) >= min_text, f"page text is {len(page.text)} characters"
    assert ink_fraction(page.screenshot) > 0.02, "the screenshot is (nearly) blank"
