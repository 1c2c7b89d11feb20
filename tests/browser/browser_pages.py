"""Page helpers for the browser tests (imported by name, so not in conftest.py: several
conftest modules exist and ``import conftest`` would find whichever was loaded first)."""

from __future__ import annotations

from playwright.sync_api import Browser, ConsoleMessage, Page

TIMEOUT_MS = 15_000


class ConsoleWatch:
    """Console errors and page exceptions seen by one page."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        self.allowed: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _on_console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(f"console: {msg.text} @ {msg.location.get('url', '')}")

    def allow(self, fragment: str) -> None:
        """Expected errors (e.g. the 401 a signed-out page gets) contain ``fragment``."""
        self.allowed.append(fragment)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]


def new_page(browser: Browser, **context_args: object) -> tuple[Page, ConsoleWatch]:
    context = browser.new_context(**context_args)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page, ConsoleWatch(page)
