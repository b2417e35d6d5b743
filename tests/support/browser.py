"""Debian's chromium driven by playwright for the web page's tests (tests/web): never a
browser playwright downloads. `open_browser(url)` skips the test when either is missing."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PNG = b"\x89PNG\r\n\x1a\n"


class Browser:
    """One chromium page, with every request, tile response and script error it saw."""

    def __init__(self, playwright, url: str) -> None:
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM)
        self.context = self.browser.new_context(viewport={"width": 1280, "height": 760})
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.tiles: list[tuple[str, int, str, bytes]] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("response", self._response)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: d.accept())  # "Delete file?" confirmations
        self.page.goto(url)

    def _response(self, response) -> None:
        if "/tiles/" in response.url:
            self.tiles.append(response)

    def png_tiles(self, part: str) -> list[str]:
        """The URLs of the tiles containing `part` that answered 200 with a PNG."""
        return [r.url for r in self.tiles
                if part in r.url and r.status == 200
                and r.headers.get("content-type") == "image/png" and r.body().startswith(PNG)]

    def wait_until(self, condition, timeout: float, what: str) -> None:
        """Poll `condition` while the browser runs (playwright's sync API only sees the
        browser's events inside its own calls: time.sleep would miss them)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self.page.wait_for_timeout(200)

    def close(self) -> None:
        self.browser.close()


@contextmanager
def open_browser(url: str) -> Iterator[Browser]:
    """A chromium page at `url`, closed at the end; skips without chromium or playwright."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (`make test` installs it as root with "
                    "apt-get); the browser tests need it")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    with sync_api.sync_playwright() as playwright:
        b = Browser(playwright, url)
        try:
            yield b
        finally:
            b.close()
