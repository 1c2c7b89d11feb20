"""The notifications page in a real browser (SPEC §6, docs/notifications.md), at desk and
phone width, against a ``kanade-backend`` process and a real webhook receiver: an admin
adds a webhook (a bad field is refused by name), sends it a test, sees the delivery —
delivered, or failed with the receiver's answer and a Retry — switches it off, all live;
the secret never reaches the page. ``KANADE_SCREENSHOTS=docs/screenshots`` keeps the
screenshots."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_pages import ConsoleWatch, new_page
from playwright.sync_api import Browser, Page, expect

from stack import BackendStack, start_backend, stop_backend
from webhook_receiver import Receiver, receiving

SECRET = "page-secret-" + "z" * 20


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendStack]:
    stack = start_backend(tmp_path_factory.mktemp("notify-page"), "--no-scheduler")
    try:
        yield stack
    finally:
        stop_backend(stack)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    yield from receiving()


def _shots(tmp_path: Path) -> Path:
    return Path(os.environ.get("KANADE_SCREENSHOTS") or tmp_path)


def test_an_admin_adds_tests_and_switches_off_a_webhook(
    console_page: tuple[Page, ConsoleWatch], backend: BackendStack, receiver: Receiver,
    tmp_path: Path,
) -> None:
    page, watch = console_page
    watch.allow("status of 400 (Bad Request)")  # the refused URL, on purpose
    page.goto(f"{backend.url}/#/notifications")
    expect(page.locator(".page[data-ready]")).to_be_visible()
    expect(page.locator("#live-status")).to_have_text("Live")
    expect(page.locator("main h1")).to_have_text("Notifications")
    page.evaluate("window.__noReload = 'still-here'")
    hooks = page.locator("table[aria-label='Webhooks'] tbody")
    expect(hooks).to_contain_text("No webhook yet")

    form = page.get_by_role("form", name="Add a webhook")
    form.get_by_label("Name").fill("ops")
    form.get_by_label("URL").fill("ftp://example.com/hook")
    form.get_by_label("Signing secret").fill(SECRET)
    form.get_by_role("button", name="Add webhook").click()
    expect(form.locator(".form-out")).to_contain_text("url: must be an absolute http://")

    form.get_by_label("URL").fill(receiver.url)
    form.get_by_role("button", name="Add webhook").click()
    row = hooks.locator("tr[data-webhook='ops']")
    expect(row).to_contain_text("signed")
    expect(row.locator("td.state")).to_have_text("enabled")

    row.get_by_role("button", name="Send test").click()
    sent = page.locator("table[aria-label='Deliveries'] tbody tr[data-status='delivered']")
    expect(sent).to_have_count(1)
    expect(sent).to_contain_text("HTTP 200")
    expect(row.locator("td.last")).to_contain_text("delivered")
    [probe] = receiver.accepted()
    assert probe.signed_with(SECRET)

    receiver.answer(then=500)
    row.get_by_role("button", name="Send test").click()
    failed = page.locator("table[aria-label='Deliveries'] tbody tr[data-status='failed']")
    expect(failed).to_contain_text("HTTP 500")
    expect(failed.get_by_role("button", name="Retry")).to_be_visible()
    row.get_by_role("button", name="Disable").click()
    expect(row.locator("td.state")).to_have_text("disabled")
    assert SECRET not in page.content()
    assert page.evaluate("window.__noReload") == "still-here", "the page was reloaded"
    page.screenshot(path=str(_shots(tmp_path) / "notifications.png"), full_page=True)


def test_the_page_fits_a_phone(browser: Browser, backend: BackendStack, tmp_path: Path) -> None:
    page, watch = new_page(browser, viewport={"width": 375, "height": 740}, is_mobile=True)
    try:
        page.goto(f"{backend.url}/#/")
        page.get_by_role("button", name="Menu").click()
        page.get_by_role("navigation", name="Main").get_by_role("link",
                                                                name="Notifications").click()
        expect(page.locator("main h1")).to_have_text("Notifications")
        expect(page.locator(".page[data-ready]")).to_be_visible()
        expect(page.locator("table[aria-label='Webhooks'] tbody tr")).not_to_have_count(0)
        width = page.evaluate("document.documentElement.scrollWidth")
        inner = page.evaluate("window.innerWidth")
        assert width <= inner, f"the page is {width}px wide in a {inner}px viewport"
        page.screenshot(path=str(_shots(tmp_path) / "notifications-phone.png"), full_page=True)
    finally:
        page.context.close()
    assert watch.unexpected() == []
