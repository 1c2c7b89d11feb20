"""A live event that arrives while a page is still loading is not lost (SPEC §6, live
updates): the shell listens from before the page mounts and hands early events over.

Found by the bulk-run test under load: the exec page fetched the exec while it ran, its
last result's event arrived before the page had subscribed, and the page said "running"
until the 60 s safety-net refresh. Here the exec's first fetch is held (Playwright route)
until the exec has completed and its event has gone out, then answered with the stale,
still-running view: the page must still end at "completed", long before 60 s.
"""

from __future__ import annotations

import time

import httpx
from playwright.sync_api import Page, Route, expect
from test_dashboard import create_slow_job

from stack import UpStack


def test_an_event_during_the_first_load_reaches_the_page(page: Page, up: UpStack) -> None:
    create_slow_job(up, "slow-mount", 1.0)
    r = httpx.post(
        f"{up.url}/api/exec/slow-mount", json={"target": {"pcs": ["local-1"]}}, timeout=10
    )
    assert r.status_code == 201, r.text
    exec_id = r.json()["exec_id"]
    held = {"done": False}

    def stale_first_answer(route: Route) -> None:
        if held["done"]:
            route.continue_()
            return
        held["done"] = True
        stale = route.fetch()  # the exec as it is now: still running
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ex = httpx.get(f"{up.url}/api/executions/{exec_id}?results=false", timeout=5).json()
            if ex["status"] == "completed":
                break
            time.sleep(0.05)
        time.sleep(1.0)  # the completion's event (debounced 250 ms) reaches the page meanwhile
        route.fulfill(response=stale)

    page.route(f"**/api/executions/{exec_id}", stale_first_answer)
    page.goto(f"{up.url}/#/executions/{exec_id}")
    expect(page.locator("#live-status")).to_have_text("Live")
    # Far under the 60 s fallback refresh: only the early event can have done it.
    expect(page.locator("#exec-status")).to_have_text("completed", timeout=10_000)
    assert held["done"]
