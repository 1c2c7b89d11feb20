"""The dashboard in a real browser against a real ``kanade up`` (SPEC §6).

Live updates are asserted through the DOM: a marker set on ``window`` survives
(no reload happened) while the page changes on its own, well before the page's
60 s fallback refresh could have done it — so the change came over SSE.
"""

from __future__ import annotations

import re
import threading
import time
import uuid

import httpx
from playwright.sync_api import Page, expect

from stack import UpStack

PAGES = [
    ("#/", "Overview"),
    ("#/agents", "Agents"),
    ("#/agents/local-1", "Agent local-1"),
    ("#/executions", "Executions"),
    ("#/jobs", "Jobs"),
    ("#/jobs/hello", "Job hello"),
    ("#/run", "Run a script"),
    ("#/audit", "Audit log"),
    ("#/login", "Sign in"),
]


def open_page(page: Page, up: UpStack, hash_: str) -> None:
    page.goto(f"{up.url}/{hash_}")
    page.wait_for_selector(".page[data-ready], .page .login, .page h1")
    expect(page.locator("#live-status")).to_have_text("Live")


def mark_window(page: Page) -> None:
    page.evaluate("window.__noReload = 'still-here'")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__noReload") == "still-here", "the page was reloaded"


def create_slow_job(up: UpStack, job_id: str, seconds: float) -> None:
    doc = {
        "id": job_id,
        "version": "1",
        "description": "sleeps, then says done",
        "execute": {
            "shell": "sh",
            "script": f"sleep {seconds}; echo done-{job_id}",
            "timeout": "30s",
        },
    }
    r = httpx.post(f"{up.url}/api/jobs", json=doc, timeout=10)
    assert r.status_code in (200, 201), r.text


def wait_exec_done(up: UpStack, exec_id: str, timeout: float = 20) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=up.url, timeout=5) as http:
        while time.monotonic() < deadline:
            ex = http.get(f"/api/executions/{exec_id}").json()
            if ex["status"] == "completed":
                return ex
            time.sleep(0.1)
    raise AssertionError(f"exec {exec_id} not completed in {timeout}s")


def test_every_page_opens_without_console_errors(page: Page, up: UpStack) -> None:
    for hash_, heading in PAGES:
        open_page(page, up, hash_)
        expect(page.locator("main h1").first).to_contain_text(heading)
    # Auth is disabled under `kanade up`: the badge says so and actions are shown.
    expect(page.locator("#auth-badge")).to_have_text("auth disabled")
    open_page(page, up, "#/")
    expect(page.get_by_role("img", name=re.compile(r"^Fleet health: 3 alive"))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(r"^Results per hour"))).to_be_visible()


def test_run_job_from_the_ui_completes_live(page: Page, up: UpStack) -> None:
    job = f"slow-{uuid.uuid4().hex[:6]}"
    create_slow_job(up, job, 1.5)
    open_page(page, up, f"#/jobs/{job}")
    mark_window(page)
    page.get_by_label("All agents").check()
    page.get_by_role("button", name="Run job").click()
    expect(page).to_have_url(re.compile(r"#/executions/[0-9a-f]+$"))
    status = page.locator("#exec-status")
    # While the scripts sleep the page shows the execution unfinished…
    expect(status).to_have_text(re.compile("pending|running"))
    # …and then, with no reload and long before the 60 s fallback, completed.
    expect(status).to_have_text("completed", timeout=15_000)
    expect(page.locator("#exec-counts")).to_contain_text("3 of 3 finished")
    expect(page.get_by_role("img", name=re.compile(r"^Execution progress: 3 ok"))).to_be_visible()
    rows = page.locator("table[aria-label='Results per PC'] tbody tr")
    expect(rows).to_have_count(3)
    assert_not_reloaded(page)


def test_cli_run_appears_live_in_the_executions_list(page: Page, up: UpStack) -> None:
    open_page(page, up, "#/executions")
    mark_window(page)
    rows = page.locator("table[aria-label='Executions'] tbody tr[data-exec-id]")
    before = set(rows.evaluate_all("rs => rs.map(r => r.dataset.execId)"))
    done = threading.Event()
    out: dict[str, object] = {}

    def cli() -> None:
        out["res"] = up.kanade("run", "--all", "--json", "--", "sleep 1; echo from-cli")
        done.set()

    t = threading.Thread(target=cli)
    t.start()
    try:
        # The new exec shows up while the CLI is still waiting for its results…
        new_row = page.locator(
            "table[aria-label='Executions'] tbody tr[data-exec-id]"
            + "".join(f":not([data-exec-id='{e}'])" for e in before)
        )
        expect(new_row).to_have_count(1, timeout=10_000)
        # …and turns completed by itself.
        expect(new_row.locator(".pill")).to_have_text("completed", timeout=15_000)
    finally:
        t.join(timeout=60)
    res = out["res"]
    assert res.returncode == 0, res.stderr  # type: ignore[attr-defined]
    assert_not_reloaded(page)


def test_result_detail_shows_stdout(page: Page, up: UpStack) -> None:
    marker = f"result-detail-{uuid.uuid4().hex[:8]}"
    r = httpx.post(
        f"{up.url}/api/run",
        json={"script": f"echo {marker}; echo oops >&2; exit 3", "target": {"pcs": ["local-2"]}},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    exec_id = r.json()["exec_id"]
    wait_exec_done(up, exec_id)
    open_page(page, up, f"#/executions/{exec_id}")
    expect(page.locator("#exec-counts")).to_contain_text("1 failed")
    page.locator("table[aria-label='Results per PC'] tbody tr").first.get_by_role("link").nth(
        1
    ).click()
    expect(page).to_have_url(re.compile(r"#/results/"))
    expect(page.get_by_label("Standard output")).to_have_text(f"{marker}\n")
    expect(page.get_by_label("Standard error")).to_have_text("oops\n")
    expect(page.locator("#exit-code")).to_have_text("3")
    expect(page.locator("main h1")).to_contain_text("local-2")


def test_agents_filter(page: Page, up: UpStack) -> None:
    open_page(page, up, "#/agents")
    rows = page.locator("table[aria-label='Agents'] tbody tr[data-pc-id]")
    expect(rows).to_have_count(3)
    page.get_by_label("Group").select_option("canary")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-pc-id", "local-1")
    expect(page.locator("#agents-count")).to_have_text("1 of 3 agents")
    page.get_by_label("Group").select_option("")
    page.get_by_label("Status").select_option("offline")
    expect(rows).to_have_count(0)
    expect(page.get_by_text("No agent matches these filters.")).to_be_visible()
    page.get_by_role("button", name="Clear filters").click()
    page.get_by_label("Search").fill("local-3")
    expect(rows).to_have_count(1)
    # The filter lives in the URL: a shared link opens filtered.
    assert "q=local-3" in page.url
    open_page(page, up, "#/agents?group=local&status=alive")
    expect(rows).to_have_count(3)
    rows.first.get_by_role("link").click()
    expect(page.locator("main h1")).to_contain_text("Agent local-1")
    expect(page.get_by_role("table", name="Effective config")).to_be_visible()


def test_phone_width_has_no_horizontal_overflow(browser, up: UpStack) -> None:  # type: ignore[no-untyped-def]
    from browser_pages import new_page

    page, watch = new_page(browser, viewport={"width": 375, "height": 740}, is_mobile=True)
    try:
        for hash_, _ in PAGES:
            open_page(page, up, hash_)
            page.wait_for_timeout(100)
            width = page.evaluate("document.documentElement.scrollWidth")
            inner = page.evaluate("window.innerWidth")
            assert width <= inner, f"{hash_}: page is {width}px wide in a {inner}px viewport"
        # The menu collapses behind a button on a phone.
        nav = page.get_by_role("navigation", name="Main")
        expect(nav).to_be_hidden()
        page.get_by_role("button", name="Menu").click()
        expect(nav).to_be_visible()
        nav.get_by_role("link", name="Agents").click()
        expect(page.locator("main h1")).to_contain_text("Agents")
    finally:
        page.context.close()
    assert watch.unexpected() == []


def test_agent_versions_and_a_rollout_on_the_agents_page(page: Page, up: UpStack) -> None:
    """SPEC §3.8 on the dashboard: the versions chart, the rollout target and an agent's
    update state (here: its target has no release, so it reports `failed`)."""
    done = up.kanade("config", "set", "--pc", "local-3", "target_version", "9.9.9")
    assert done.returncode == 0, done.stderr
    try:
        open_page(page, up, "#/agents")
        versions = page.locator("#agent-versions")
        expect(versions.get_by_role("img", name=re.compile(r"Agent versions: 3 "))).to_be_visible()
        expect(versions).to_contain_text("pc.local-3 → 9.9.9")
        row = page.locator("table[aria-label='Agents'] tbody tr[data-pc-id='local-3']")
        expect(row).to_contain_text("failed → 9.9.9", timeout=20_000)
        expect(row.locator("span[title*='no release 9.9.9/']")).to_be_visible()
    finally:
        up.kanade("config", "unset", "--pc", "local-3", "target_version")


def test_a_pc_that_never_started_shows_no_result_with_the_reason(page: Page, up: UpStack) -> None:
    # An exec for a pc that is not there, then killed: nothing reaches that pc any more, so
    # it is closed at once as "no result" (SPEC §4.3) instead of staying "pending" for good.
    with httpx.Client(base_url=up.url, timeout=10) as http:
        r = http.post(  # force: a pc nothing knows is refused otherwise
            "/api/run?force=true", json={"script": "echo never", "target": {"pcs": ["ghost-pc"]}}
        )
        assert r.status_code == 201, r.text
        exec_id = r.json()["exec_id"]
        open_page(page, up, f"#/executions/{exec_id}")
        expect(page.locator("#exec-deadline")).to_be_visible()  # a pending exec: ends by…
        mark_window(page)
        assert http.post(f"/api/executions/{exec_id}/kill").status_code == 200
    expect(page.locator("#exec-status")).to_have_text("cancelled", timeout=10_000)
    expect(page.locator("#exec-counts")).to_contain_text("1 no result")
    expect(page.locator("#exec-counts")).to_contain_text("0 pending")
    row = page.locator("table[aria-label='Results per PC'] tbody tr[data-pc-id='ghost-pc']")
    expect(row.locator(".pill")).to_have_text("no result")
    expect(page.locator("#exec-deadline")).to_have_count(0)  # it has ended
    assert_not_reloaded(page)
