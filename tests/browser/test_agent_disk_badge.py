"""A full agent disk on the dashboard (SPEC §6, §7): the agents page marks the agent with a
"disk full" badge and its page says new work is refused — live, no reload — and both go
away once the disk has room again. A real agent on a real 8 MB tmpfs (needs root: skipped
otherwise, with the reason)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from smalldisk import SmallDisk, small_disk
from stack import BackendStack, start_backend, stop_backend

PC = "disk-ui-1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BackendStack, SmallDisk]]:
    base = tmp_path_factory.mktemp("disk-badge")
    stack = start_backend(base, "--no-scheduler")
    try:
        # BackendStack.start_agent puts the agent's data dir here.
        with small_disk(Path(stack.log.parent) / "agents" / PC) as disk:
            stack.start_agent(PC)
            yield stack, disk
    finally:
        stop_backend(stack)


def test_a_full_disk_is_a_badge_on_the_agents_page_and_said_on_the_agents_own(
    page: Page, stack: tuple[BackendStack, SmallDisk]
) -> None:
    backend, disk = stack
    page.goto(f"{backend.url}/#/agents")
    row = page.locator(f"table[aria-label='Agents'] tbody tr[data-pc-id='{PC}']")
    expect(row).to_be_visible(timeout=30_000)
    badge = row.locator("[data-badge='disk-full']")
    expect(badge).to_have_count(0)
    page.evaluate("window.__noReload = 'still-here'")

    disk.fill()
    expect(badge).to_have_text("disk full", timeout=20_000)  # the next heartbeat (5 s)
    expect(badge).to_have_attribute("title", re.compile(r"bytes free|No space left"))
    assert page.evaluate("window.__noReload") == "still-here"

    row.get_by_role("link", name=PC).click()
    expect(page.locator("main h1")).to_contain_text(f"Agent {PC}")
    expect(page.locator("main")).to_contain_text("new work is refused")

    disk.free()
    page.goto(f"{backend.url}/#/agents")
    expect(row).to_be_visible()
    expect(row.locator("[data-badge='disk-full']")).to_have_count(0, timeout=20_000)
