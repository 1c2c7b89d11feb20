"""Schedules, rollouts and the freeze in a real browser against a real ``kanade up`` (SPEC
§4.4, §4.5, §4.7, §6).

Schedules are created with the CLI and the API; rollouts with ``POST /api/exec/{job}`` and
real agents (local-1 is in ``canary``; local-2 and local-3 are not). Live updates are
asserted as in ``test_dashboard``: a marker on ``window`` survives while the page changes
on its own, long before the 60 s fallback refresh.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
from browser_pages import new_page
from playwright.sync_api import Browser, Page, expect
from test_dashboard import assert_not_reloaded, mark_window, open_page

from stack import UpStack


def _post(up: UpStack, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{up.url}{path}", json=body, timeout=10)
    assert r.status_code in (200, 201), r.text
    return r.json()


def _get(up: UpStack, path: str) -> dict[str, Any]:
    r = httpx.get(f"{up.url}{path}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _job(up: UpStack, script: str, prefix: str = "job") -> str:
    job_id = f"{prefix}-{uuid.uuid4().hex[:6]}"
    _post(
        up,
        "/api/jobs",
        {
            "id": job_id,
            "version": "1",
            "execute": {"shell": "sh", "script": script, "timeout": "20s"},
        },
    )
    return job_id


def test_schedules_page_lists_a_cli_schedule_and_shows_its_preview(
    page: Page, up: UpStack, tmp_path: Path
) -> None:
    sid = f"nightly-{uuid.uuid4().hex[:6]}"
    doc = {
        "id": sid,
        "job_id": "hello",
        "description": "weeknights, Berlin time",
        "when": {"calendar": {"at": "02:30", "days": ["mon-fri"]}},
        "target": {"groups": ["local"]},
        "tz": "Europe/Berlin",
    }
    path = tmp_path / f"{sid}.json"
    path.write_text(json.dumps(doc))
    res = up.kanade("schedule", "create", str(path))
    assert res.returncode == 0, res.stderr
    # A reconcile schedule, disabled so it never fires during the test run.
    rid = f"once-{uuid.uuid4().hex[:6]}"
    _post(
        up,
        "/api/schedules",
        {
            "id": rid,
            "job_id": "hello",
            "enabled": False,
            "when": {"per_pc": "once"},
            "target": {"pcs": ["local-2", "local-3"]},
        },
    )
    preview = _get(up, f"/api/schedules/{sid}/preview?n=10")

    open_page(page, up, "#/schedules")
    row = page.locator(f"table[aria-label='Schedules'] tbody tr[data-schedule-id='{sid}']")
    expect(row).to_contain_text("hello")
    expect(row).to_contain_text("02:30 on mon-fri")
    expect(row.locator(".next-fire")).to_contain_text("02:30 Europe/Berlin")
    expect(row.locator(".next-fire")).to_contain_text("01:30 UTC")  # CET = UTC+1 in winter…
    first = preview["fires"][0]
    expect(row.locator(".next-fire")).to_contain_text(first["local"][:10])  # …or whatever date
    expect(
        page.locator(f"table[aria-label='Schedules'] tr[data-schedule-id='{rid}']")
    ).to_contain_text("disabled")

    row.get_by_role("link", name=sid).click()
    expect(page.locator("main h1")).to_contain_text(f"Schedule {sid}")
    expect(page.get_by_label("Schedule document")).to_contain_text("tz: Europe/Berlin")
    fires = page.locator("table[aria-label='Next fires'] tbody tr")
    expect(fires).to_have_count(10)
    for i in (0, 9):
        f = preview["fires"][i]
        expect(fires.nth(i)).to_contain_text(f["local"][:16].replace("T", " "))
        expect(fires.nth(i)).to_contain_text(f["utc"][:16].replace("T", " ") + " UTC")
    expect(page.get_by_text("fired by the backend; agents do not hold it")).to_be_visible()

    # The per-pc preview of a reconcile shape: each targeted pc, would_fire and why.
    open_page(page, up, f"#/schedules/{rid}")
    expect(page.get_by_text("Disabled: these are the times it would fire")).to_be_visible()
    pcs = page.locator("table[aria-label='Per PC preview'] tbody tr")
    expect(pcs).to_have_count(2)
    expect(pcs.first).to_have_attribute("data-pc-id", "local-2")
    expect(pcs.first).to_contain_text("would fire")
    expect(pcs.first).to_contain_text("never succeeded")

    # The overview's "Upcoming fires" card reads the same API.
    open_page(page, up, "#/")
    fire_row = page.locator(f"table[aria-label='Upcoming fires'] tr[data-schedule-id='{sid}']")
    expect(fire_row).to_contain_text("02:30 Europe/Berlin")


def test_disable_with_cascade_and_enable_from_the_ui(page: Page, up: UpStack) -> None:
    job = _job(up, "echo cascade", "casc")
    sid = f"casc-{uuid.uuid4().hex[:6]}"
    _post(
        up,
        "/api/schedules",
        {
            "id": sid,
            "job_id": job,
            "when": {"calendar": {"at": "03:17"}},
            "target": {"all": True},
            "tz": "Asia/Tokyo",
        },
    )
    open_page(page, up, f"#/schedules/{sid}")
    state = page.locator("#schedule-state")
    expect(state).to_have_text("enabled")
    page.get_by_role("button", name="Disable…").click()
    page.get_by_label("Stop firing and revoke the job").check()
    page.get_by_role("button", name="Confirm disable").click()
    expect(state).to_have_text("disabled")
    expect(page.get_by_text(f"Job {job} revoked.")).to_be_visible()
    expect(page.locator("#next-fire")).to_contain_text("disabled")
    assert _get(up, f"/api/schedules/{sid}")["enabled"] is False
    revoked = {r.get("job_id") for r in _get(up, "/api/revocations")["items"]}
    assert job in revoked

    page.get_by_role("button", name="Enable").click()
    expect(state).to_have_text("enabled")
    expect(page.locator("#next-fire")).to_contain_text("Asia/Tokyo")
    assert _get(up, f"/api/schedules/{sid}")["enabled"] is True
    # The list agrees without a reload of its own.
    open_page(page, up, "#/schedules?show=disabled")
    expect(page.locator(f"tr[data-schedule-id='{sid}']")).to_have_count(0)


def test_an_agent_schedules_decisions_show_live(page: Page, up: UpStack) -> None:
    # runs_on: agent fires on local-2 itself; its decisions reach the page (issue #14 item 7)
    job = _job(up, "echo local", "local")
    sid = f"local-{uuid.uuid4().hex[:6]}"
    _post(
        up,
        "/api/schedules",
        {
            "id": sid,
            "job_id": job,
            "when": {"cron": "*/2 * * * * *"},
            "target": {"pcs": ["local-2"]},
            "runs_on": "agent",
            "tz": "utc",
        },
    )
    try:
        open_page(page, up, f"#/schedules/{sid}")
        mark_window(page)
        row = page.locator("tr[data-result='fired']").filter(has_text="local-2").first
        expect(row).to_be_visible(timeout=20_000)
        expect(page.locator("#schedule-counters")).not_to_have_text(re.compile(r"^0 /"))
        assert_not_reloaded(page)
    finally:
        httpx.delete(f"{up.url}/api/schedules/{sid}", timeout=10)


def test_rollout_waves_complete_live(page: Page, up: UpStack) -> None:
    job = _job(up, "sleep 0.3; echo wave", "waves")
    created = _post(
        up,
        f"/api/exec/{job}",
        {
            "target": {"groups": ["local"]},
            "rollout": {
                "waves": [
                    {"group": "canary"},
                    {"pcs": ["local-2"], "delay": "1s"},
                    {"percent": 100, "delay": "1s"},
                ],
                "halt_on_failure_rate": 0.5,
            },
        },
    )
    rid = created["rollout_id"]
    assert rid == created["exec_id"]
    open_page(page, up, f"#/rollouts/{rid}")
    mark_window(page)
    status = page.locator("#rollout-status")
    # Not finished when the page opened (three waves, a second apart)…
    expect(status).to_have_text(re.compile("running"))
    waves = page.locator("table[aria-label='Waves'] tbody tr")
    expect(waves).to_have_count(3)
    # …then every wave settles and the rollout completes, with no reload.
    expect(status).to_have_text("completed", timeout=20_000)
    for i in range(3):
        expect(waves.nth(i).locator(".wave-finished")).to_have_text("1/1")
        expect(waves.nth(i)).to_have_attribute("data-state", "settled")
    expect(page.get_by_role("img", name=re.compile(r"^Wave progress: wave 0"))).to_have_attribute(
        "aria-label", re.compile(r"wave 2 \(rest\) settled: 1 of 1 finished")
    )
    expect(page.get_by_role("button", name="Resume")).to_have_count(0)
    assert_not_reloaded(page)
    assert _get(up, f"/api/rollouts/{rid}")["status"] == "completed"
    # The list shows it, and the execution links back to it.
    open_page(page, up, "#/rollouts")
    row = page.locator(f"table[aria-label='Rollouts'] tr[data-rollout-id='{rid}']")
    expect(row).to_contain_text("completed")
    expect(row).to_contain_text("3/3")
    open_page(page, up, f"#/executions/{rid}")
    expect(page.locator("#rollout-link")).to_have_text("3 waves")


def test_a_halted_rollout_is_resumed_from_the_ui(page: Page, up: UpStack, tmp_path: Path) -> None:
    marker = tmp_path / "ran-once"
    # Fails the first time it runs anywhere (the canary), succeeds after.
    job = _job(up, f"if [ -e {marker} ]; then echo ok; else touch {marker}; exit 1; fi", "flaky")
    rid = _post(
        up,
        f"/api/exec/{job}",
        {
            "target": {"groups": ["local"]},
            "rollout": {
                "waves": [{"group": "canary"}, {"percent": 100, "delay": "1s"}],
                "halt_on_failure_rate": 0.5,
            },
        },
    )["rollout_id"]
    open_page(page, up, f"#/rollouts/{rid}")
    mark_window(page)
    status = page.locator("#rollout-status")
    expect(status).to_have_text("halted", timeout=20_000)
    expect(page.locator("#rollout-reason")).to_contain_text("exceeds halt_on_failure_rate 0.5")
    expect(page.locator("table[aria-label='Waves'] tbody tr").first).to_contain_text("exceeded")
    page.get_by_role("button", name="Resume").click()
    expect(status).to_have_text("completed", timeout=20_000)
    rest = page.locator("table[aria-label='Waves'] tbody tr").nth(1)
    expect(rest.locator(".wave-finished")).to_have_text("2/2")
    expect(page.get_by_role("button", name="Resume")).to_have_count(0)
    expect(page.get_by_role("button", name="Abort…")).to_have_count(0)
    assert_not_reloaded(page)
    assert _get(up, f"/api/rollouts/{rid}")["status"] == "completed"


def test_freeze_set_and_clear_from_the_schedules_page(page: Page, up: UpStack) -> None:
    try:
        _freeze_round_trip(page, up)
    finally:  # never leave the shared stack frozen
        httpx.delete(f"{up.url}/api/freeze", timeout=10)


def _freeze_round_trip(page: Page, up: UpStack) -> None:
    open_page(page, up, "#/schedules")
    panel = page.locator("#freeze-panel")
    expect(panel).to_have_attribute("data-state", "off")
    page.get_by_label("Reason").fill("browser test freeze")
    page.get_by_role("button", name="Freeze scheduled fires").click()
    expect(panel).to_have_attribute("data-state", "frozen")
    expect(panel).to_contain_text("browser test freeze")
    assert _get(up, "/api/freeze")["frozen"] is True
    # The overview's banner says so, with the same control.
    open_page(page, up, "#/")
    banner = page.locator("#freeze-banner")
    expect(banner).to_contain_text("Fleet frozen")
    banner.get_by_role("button", name="Clear freeze").click()
    expect(banner).to_have_attribute("data-state", "off")
    expect(banner).to_have_text("")
    assert _get(up, "/api/freeze")["frozen"] is False


NEW_PAGES = ["#/schedules", "#/rollouts", "#/approvals"]


def test_new_pages_fit_a_phone(browser: Browser, up: UpStack) -> None:
    rollouts = _get(up, "/api/rollouts?limit=1")["items"]
    schedules = _get(up, "/api/schedules")["items"]
    pages = list(NEW_PAGES)
    if rollouts:
        pages.append(f"#/rollouts/{rollouts[0]['rollout_id']}")
    if schedules:
        pages.append(f"#/schedules/{schedules[0]['id']}")
    page, watch = new_page(browser, viewport={"width": 375, "height": 740}, is_mobile=True)
    try:
        for hash_ in pages:
            open_page(page, up, hash_)
            expect(page.locator(".page[data-ready]")).to_have_count(1)
            width = page.evaluate("document.documentElement.scrollWidth")
            inner = page.evaluate("window.innerWidth")
            assert width <= inner, f"{hash_}: page is {width}px wide in a {inner}px viewport"
        page.get_by_role("button", name="Menu").click()
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Rollouts").click()
        expect(page.locator("main h1")).to_have_text("Rollouts")
    finally:
        page.context.close()
    assert watch.unexpected() == []
