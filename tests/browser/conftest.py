"""Browser fixtures: Debian's chromium driven by Playwright against a real ``kanade up``.

* ``up`` (session): one ``kanade up --agents 3`` with the example jobs for every
  dashboard test (~3 s to start);
* ``browser`` (module): headless chromium from ``/usr/bin/chromium`` (``make
  browser-deps`` installs it with apt; ``playwright install`` is never used);
* ``page`` (per test): a fresh context and page whose console errors and uncaught
  exceptions fail the test at teardown.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_pages import ConsoleWatch, new_page
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from stack import UpStack, start_up, stop_up

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch(pw: Playwright) -> Browser:
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# Module scope, not session: sync Playwright keeps an event loop running on the main
# thread while it is open, which would break every asyncio test collected after ours.
@pytest.fixture(scope="module")
def playwright_sync() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: run `make browser-deps` (apt install chromium)")
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright_sync: Playwright) -> Iterator[Browser]:
    b = launch(playwright_sync)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="session")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    base = tmp_path_factory.mktemp("browser-up")
    stack = start_up(base / "data", base / "up.log", agents=3)
    try:
        yield stack
    finally:
        stop_up(stack)


@pytest.fixture
def console_page(browser: Browser) -> Iterator[tuple[Page, ConsoleWatch]]:
    page, watch = new_page(browser, viewport={"width": 1280, "height": 900})
    try:
        yield page, watch
    finally:
        page.context.close()
    assert watch.unexpected() == [], "console errors on the page"


@pytest.fixture
def page(console_page: tuple[Page, ConsoleWatch]) -> Page:
    return console_page[0]
