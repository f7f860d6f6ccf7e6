"""Pages in a real headless Chromium (Debian's `chromium`, driven by playwright): the browser,
a guard that a page loads nothing from elsewhere and logs no script error, and screenshots
under tests/artifacts/ (git-ignored). Used by the dashboard's and /docs' browser tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "tests" / "artifacts"


def sync_playwright():
    """playwright and Debian's chromium, or a loud skip — except in CI, where a missing browser
    fails: `make test` installs it, so its absence there is a broken set-up, not a pass."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright as start
    except ImportError:
        missing = "the `playwright` package (pip install -e '.[test]')"
    if missing is None and not CHROMIUM.exists():
        missing = f"{CHROMIUM} (apt-get install chromium fonts-noto-cjk; `make test` does it as root)"
    if missing:
        message = f"THE PAGES WERE NOT TESTED IN A BROWSER: {missing} is missing"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return start()


class Browser:
    """One signed-out browser context, with guards: every request stays on the app's origin
    (no CDN), and no page logs a script error. Screenshots are named `<shots>-<name>.png`."""

    def __init__(self, chromium, base_url: str, locale: str = "en-US", shots: str = "dashboard") -> None:
        self.base_url = base_url
        self.shots = shots
        # A team in China: the pages show times on the reader's clock (UTC+8), the server's are UTC.
        self.context = chromium.new_context(locale=locale, timezone_id="Asia/Shanghai",
                                            viewport={"width": 1440, "height": 900},
                                            extra_http_headers={"Accept-Language": locale})
        self.page = self.context.new_page()
        self.foreign: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: None if r.url.startswith(base_url) else self.foreign.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)

    def open(self, path: str):
        response = self.page.goto(self.base_url + path)
        return response

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{self.shots}-{name}.png"), full_page=True)

    def sign_in(self, key: str) -> None:
        self.page.fill("#api-key", key)
        self.page.click("#login-submit")
        self.page.wait_for_load_state()

    def check_clean(self, expected_errors: tuple[str, ...] = ("404",)) -> None:
        assert not self.foreign, f"pages loaded from elsewhere: {self.foreign}"
        # An answer the test asked for (a 404 page) is an expected "error" in the console; anything else is a bug.
        assert not [e for e in self.errors if not any(expected in e for expected in expected_errors)], self.errors
