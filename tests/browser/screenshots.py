"""Screenshots the browser tests take of each page and state they check, at desk and phone
width: into ``$KANADE_SCREENSHOTS`` when set (``KANADE_SCREENSHOTS=docs/screenshots``
refreshes the ones the docs show), else into a scratch directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from playwright.sync_api import Locator, Page


def screenshot_dir() -> Path:
    where = os.environ.get("KANADE_SCREENSHOTS")
    path = Path(where) if where else Path(tempfile.gettempdir()) / "kanade-screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def shot(page: Page, name: str, element: Locator | None = None) -> Path:
    """``<name>.png`` of what the viewport shows from the top (or of ``element``): the
    first screen is what a reader of the docs needs, and keeps the files small."""
    path = screenshot_dir() / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")
    if element is not None:
        element.screenshot(path=str(path), animations="disabled")
    else:
        page.screenshot(path=str(path), animations="disabled")
    return path
