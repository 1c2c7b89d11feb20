"""The enrolment page in a real browser (SPEC §6, §8.1): enrolled agents with their status
and the open tokens, updated live (no reload) as tokens are made, used and agents revoked —
against a ``kanade-backend`` process on a secured broker."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from kanade.security import nats_jwt
from stack import BackendStack, start_backend, stop_backend


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendStack]:
    base = tmp_path_factory.mktemp("enrolment-page")
    stack = start_backend(base, "--no-scheduler", authority=base / "security")
    try:
        yield stack
    finally:
        stop_backend(stack)


def test_enrolled_agents_and_open_tokens_update_live(page: Page, secured: BackendStack) -> None:
    page.goto(f"{secured.url}/#/enrolment")
    expect(page.locator(".page[data-ready]")).to_be_visible()
    expect(page.locator("#live-status")).to_have_text("Live")
    expect(page.locator("main h1")).to_have_text("Enrolment")
    page.evaluate("window.__noReload = 'still-here'")
    tokens = page.locator("table[aria-label='Open enrolment tokens'] tbody")
    agents = page.locator("table[aria-label='Enrolled agents'] tbody")
    expect(agents).to_contain_text("No agent has enrolled yet.")

    with httpx.Client(base_url=secured.url, timeout=10) as http:
        made = http.post("/api/agents/enroll-tokens", json={"groups": ["web"]}).json()
        row = tokens.locator(f"tr[data-token='{made['token_id']}']")
        expect(row).to_contain_text("web")

        key = nats_jwt.new_identity("user").public_key
        grant = http.post(
            "/api/enroll", json={"token": made["token"], "pc_id": "page-1", "public_key": key}
        )
        assert grant.status_code == 200, grant.text
        expect(row).to_have_count(0)
        agent = agents.locator("tr[data-pc='page-1']")
        expect(agent.locator("td.status")).to_have_text("active")

        assert http.post("/api/agents/page-1/revoke").status_code == 200
        expect(agent.locator("td.status")).to_have_text("revoked")
        expect(agent).to_contain_text("by anonymous")
    assert page.evaluate("window.__noReload") == "still-here", "the page was reloaded"


def test_the_enrolment_page_is_in_the_navigation(page: Page, secured: BackendStack) -> None:
    page.goto(f"{secured.url}/#/")
    page.get_by_role("link", name="Enrolment").click()
    expect(page.locator("main h1")).to_have_text("Enrolment")
    expect(page.locator(".page[data-ready]")).to_be_visible()
