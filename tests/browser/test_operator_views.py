"""Issue #18 items 4 and 5 in a real browser (SPEC §6, §8): the results page, user
management, bulk select → run, script text by role (execution, approval, audit), no Kill
on an exec awaiting approval, and wide tables at phone width.

A broker, a ``kanade-backend --auth jwt`` and two real agents (web-1, web-2). Users: ada
(admin), otto and olga (operators), vera (viewer). Every page and state is checked at desk
and at phone width, with a screenshot of each (tests/browser/screenshots.py).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_pages import ConsoleWatch, new_page
from playwright.sync_api import Browser, Page, expect
from screenshots import shot
from test_auth import EXPECTED_401, PASSWORD, login

from polling import wait_until
from stack import secret_file, start_backend, stop_backend

ADMIN_TOKEN = "browser-test-static-token-" + uuid.uuid4().hex
JWT_SECRET = uuid.uuid4().hex + uuid.uuid4().hex
DESK = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
WIDTHS = [pytest.param(DESK, id="desk"), pytest.param(PHONE, id="phone")]
APPROVED_SCRIPT = "echo patched-by-approval"
RUNS = 26  # x 2 agents: more results than one page of 50
DASH = "\u2013"  # the en dash the pages put in "1-50 of 53"

# Cells squeezed to a few characters per line (the bug on phones: the audit log's details
# read 6 to 13 characters a line, rows several screens tall): text of 24+ characters laid
# out in lines of fewer than 8 characters on average, or of 60+ characters in lines of fewer
# than 16 (lines counted from the text's own line boxes, not the row's height); or any text
# of 4+ characters in a cell narrower than 40 px.
NARROW_CELLS = """() => [...document.querySelectorAll('main td')].filter((td) => {
  const r = td.getBoundingClientRect(); const text = td.innerText.trim();
  if (!r.width || !r.height || text.length < 4) return false;
  if (r.width < 40) return true;
  if (td.querySelector('button, select, input, details')) return false; // controls, not text
  const range = document.createRange(); range.selectNodeContents(td);
  const lines = new Set([...range.getClientRects()].filter((b) => b.width > 0)
    .map((b) => Math.round(b.bottom))).size || 1;
  const perLine = text.length / lines;
  return (text.length >= 24 && perLine < 8) || (text.length >= 60 && perLine < 16);
}).map((td) => td.innerText.trim().slice(0, 40))"""
PAGE_OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base: Path = tmp_path_factory.mktemp("browser-operator-views")
    stack = start_backend(
        base,
        "--auth",
        "jwt",
        "--jwt-secret-file",
        str(secret_file(base / "jwt-secret", JWT_SECRET)),
        "--auth-token-file",
        str(secret_file(base / "admin-token", ADMIN_TOKEN)),
    )
    try:
        stack.start_agent("web-1", "web")
        stack.start_agent("web-2", "web")
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=stack.url, headers=admin, timeout=10) as http:
            for user, role in (("ada", "admin"), ("otto", "operator"), ("olga", "operator"),
                               ("vera", "viewer")):  # fmt: skip
                r = http.post(
                    "/api/users", json={"username": user, "password": PASSWORD, "role": role}
                )
                assert r.status_code == 201, r.text
            for job in (
                {"id": "greet", "script": "echo hi from $(hostname)"},
                {"id": "fail3", "script": "echo failing; exit 3"},
                {"id": "patch-web", "script": APPROVED_SCRIPT, "require_approval": True},
            ):
                doc = {
                    "id": job["id"],
                    "version": "1",
                    "require_approval": job.get("require_approval", False),
                    "execute": {"shell": "sh", "script": job["script"], "timeout": "10s"},
                }
                assert http.post("/api/jobs", json=doc).status_code in (200, 201)
            wait_until(
                lambda: (
                    {"web-1", "web-2"}
                    <= {
                        a["pc_id"]
                        for a in http.get("/api/agents").json()["items"]
                        if a["status"] == "alive"
                    }
                ),
                "agents web-1 and web-2 checked in",
                timeout=30,
            )
            execs = [
                http.post("/api/exec/greet", json={"target": {"groups": ["web"]}}).json()
                for _ in range(RUNS)
            ]
            execs.append(http.post("/api/exec/fail3", json={"target": {"pcs": ["web-1"]}}).json())
            # Audit entries with long action names and long details: what squeezed the
            # audit log's details to a few characters a line on a phone.
            assert http.post("/api/agents/web-1/ping").status_code == 200
            r = http.post("/api/agents/enroll-tokens", json={"groups": ["web", "canary"]})
            assert r.status_code == 200, r.text
            wait_until(
                lambda: (
                    http.get("/api/results", params={"limit": 1}).json()["total"] >= 2 * RUNS + 1
                    and all(
                        http.get(f"/api/executions/{e['exec_id']}?results=false").json()["status"]
                        == "completed"
                        for e in execs[-2:]
                    )
                ),
                "results of the seeded runs",
                timeout=60,
            )
        yield {"stack": stack, "url": stack.url, "admin": admin}
    finally:
        stop_backend(stack)


@pytest.fixture
def session(browser: Browser) -> Iterator[Any]:
    """open(viewport) → a page whose console errors fail the test (401 of a signed-out
    page allowed); every page opened is closed afterwards."""
    opened: list[tuple[Page, ConsoleWatch]] = []

    def open_(viewport: dict[str, int], allow: tuple[str, ...] = ()) -> Page:
        page, watch = new_page(browser, viewport=viewport)
        for fragment in (EXPECTED_401, *allow):
            watch.allow(fragment)
        opened.append((page, watch))
        return page

    yield open_
    for page, watch in opened:
        page.context.close()
        assert watch.unexpected() == []


def signed_in(
    session: Any,
    secured: dict[str, Any],
    user: str,
    hash_: str,
    size: dict[str, int],
    allow: tuple[str, ...] = (),
) -> Page:
    """A page at ``hash_`` signed in as ``user``; ``allow``: console errors expected (the
    browser logs each 4xx answer a test provokes on purpose)."""
    page: Page = session(size, allow)
    page.goto(f"{secured['url']}/{hash_}")
    login(page, user)
    expect(page.locator("#user")).to_contain_text(user)
    expect(page.locator(".page[data-ready]")).to_have_count(1)
    return page


def tag(size: dict[str, int]) -> str:
    return "phone" if size is PHONE else "desk"


def api(secured: dict[str, Any], method: str, path: str, **kw: Any) -> httpx.Response:
    with httpx.Client(base_url=secured["url"], headers=secured["admin"], timeout=10) as http:
        return http.request(method, path, **kw)


def assert_phone_friendly(page: Page, table: str) -> None:
    assert page.evaluate(NARROW_CELLS) == [], "cells squeezed to a character per line"
    assert page.evaluate(PAGE_OVERFLOW) <= 1, "the page scrolls sideways"
    if table:  # each row a card (measured in one go: a live refresh may redraw the table)
        displays = page.evaluate(
            "(t) => [...document.querySelectorAll(`table[aria-label='${t}'] tbody tr`)]"
            ".map((tr) => getComputedStyle(tr).display)",
            table,
        )
        assert displays and set(displays) == {"block"}, displays


# --- results ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", WIDTHS)
def test_results_page_searches_filters_and_pages_on_the_server(
    session: Any, secured: dict[str, Any], size: dict[str, int]
) -> None:
    page = signed_in(session, secured, "vera", "#/results", size)
    count = page.locator("#results-count")
    expect(count).to_contain_text(re.compile(rf"^1{DASH}50 of \d+ results$"))
    total = int(count.inner_text().split(" of ")[1].split()[0])
    assert total >= 2 * RUNS + 1
    rows = page.locator("table[aria-label='Results'] tbody tr")
    expect(rows).to_have_count(50)
    shot(page, f"results-{tag(size)}")
    if size is PHONE:
        assert_phone_friendly(page, "Results")
    if size is DESK:
        page.get_by_role("button", name="Older →").click()
        expect(count).to_contain_text(f"51{DASH}{min(100, total)} of {total}")

    page.get_by_label("Status").select_option("failed")
    expect(count).to_have_text(f"1{DASH}1 of 1 results")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-kind", "failed")
    expect(rows.first).to_contain_text("fail3")
    expect(page).to_have_url(re.compile(r"#/results\?status=failed$"))
    shot(page, f"results-failed-{tag(size)}")
    if size is PHONE:
        return  # the phone shows the same filters, stacked; the rest is the desk's

    page.get_by_label("Status").select_option("")
    page.get_by_label("Exit code").fill("3")
    page.get_by_role("button", name="Filter").click()
    expect(count).to_have_text(f"1{DASH}1 of 1 results")

    page.get_by_role("button", name="Clear").click()
    page.get_by_label("Search").fill("WEB-2")
    page.get_by_label("Search").press("Enter")
    expect(count).to_have_text(f"1{DASH}{RUNS} of {RUNS} results")
    pcs = set(rows.evaluate_all("(trs) => trs.map((tr) => tr.dataset.pcId)"))
    assert pcs == {"web-2"}

    page.get_by_role("button", name="Clear").click()
    page.get_by_label("Job").fill("fail3")
    page.get_by_label("Job").press("Enter")
    expect(count).to_have_text(f"1{DASH}1 of 1 results")

    # A time range that holds none of them.
    page.get_by_label("Time").select_option("custom")
    page.get_by_label("From", exact=True).fill("2020-01-01T00:00")
    page.get_by_label("To", exact=True).fill("2020-01-02T00:00")
    page.get_by_label("To", exact=True).dispatch_event("change")
    expect(count).to_have_text("No results match.")
    expect(page.get_by_text("No results match these filters.")).to_be_visible()


# --- users -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", WIDTHS)
def test_an_admin_manages_users_in_the_ui(
    session: Any, secured: dict[str, Any], size: dict[str, int]
) -> None:
    # A refused password (400) and a refused demotion (409) are provoked on purpose.
    page = signed_in(session, secured, "ada", "#/users", size, ("status of 400", "status of 409"))
    name = f"uma-{tag(size)}"
    users = page.locator("table[aria-label='Users']")
    expect(users.locator("tr[data-username='vera']")).to_contain_text("viewer")
    if size is PHONE:
        assert_phone_friendly(page, "Users")
    # A bad password is refused, naming the field.
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password", exact=True).fill("x")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("alert")).to_contain_text("password")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Create user").click()
    row = users.locator(f"tr[data-username='{name}']")
    expect(row).to_contain_text("active")

    row.get_by_label(f"Role of {name}").select_option("operator")
    expect(page.locator("#users-out")).to_contain_text(f"{name}: role set to operator")
    listed = {u["username"]: u for u in api(secured, "GET", "/api/users").json()["items"]}
    assert listed[name]["role"] == "operator"

    row.get_by_role("button", name="Disable").click()
    expect(row).to_have_attribute("data-state", "disabled")
    expect(row).to_contain_text("disabled by ada")
    shot(page, f"users-{tag(size)}")
    if size is PHONE:
        return  # the rest of the flow is the desk's
    r = api(secured, "POST", "/api/auth/login", json={"username": name, "password": PASSWORD})
    assert r.status_code == 401 and "disabled" in r.json()["error"]
    row.get_by_role("button", name="Enable").click()
    expect(row).to_have_attribute("data-state", "active")

    row.get_by_role("button", name="Reset password").click()
    row.get_by_label(f"New password for {name}").fill("a-brand-new-pass-1")
    row.get_by_role("button", name="Set password", exact=True).click()
    expect(page.locator("#users-out")).to_contain_text(f"{name}: password reset")
    r = api(secured, "POST", "/api/auth/login",
            json={"username": name, "password": "a-brand-new-pass-1"})  # fmt: skip
    assert r.status_code == 200

    # ada is the only admin who can sign in: demoting her is refused and said so.
    users.locator("tr[data-username='ada']").get_by_label("Role of ada").select_option("viewer")
    expect(page.locator("#users-out")).to_contain_text("last admin")
    expect(users.locator("tr[data-username='ada']").get_by_label("Role of ada")).to_have_value(
        "admin"
    )

    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)


def test_only_admins_see_user_management(session: Any, secured: dict[str, Any]) -> None:
    page = signed_in(session, secured, "otto", "#/users", DESK)
    expect(page.get_by_text("Only admins manage users.")).to_be_visible()
    expect(page.get_by_role("link", name="Users")).to_be_hidden()
    expect(page.locator("table[aria-label='Users']")).to_have_count(0)


# --- bulk select → run -----------------------------------------------------------------------


@pytest.mark.parametrize("size", WIDTHS)
def test_select_agents_then_run_a_script_or_a_job(
    session: Any, secured: dict[str, Any], size: dict[str, int]
) -> None:
    page = signed_in(session, secured, "otto", "#/agents", size)
    page.get_by_label("Select web-1").check()
    page.get_by_label("Select web-2").check()
    expect(page.locator("#selected-count")).to_have_text("2 selected")
    expect(page.locator("tr.selected")).to_have_count(2)
    shot(page, f"agents-bulk-{tag(size)}")
    if size is PHONE:
        assert page.evaluate(NARROW_CELLS) == []

    page.locator("#bulk-run-script").click()
    expect(page).to_have_url(re.compile(r"#/run\?pcs=web-1%2Cweb-2$"))
    expect(page.get_by_label("PCs", exact=True)).to_have_value("web-1, web-2")
    page.get_by_label("Script", exact=True).fill("echo bulk-run")
    page.get_by_role("button", name="Run script").click()
    expect(page.locator("#exec-status")).to_have_text("completed", timeout=30_000)
    expect(page.locator("#exec-counts")).to_contain_text("2 of 2 finished")

    page.goto(f"{secured['url']}/#/agents")
    page.locator("#select-all").check()
    expect(page.locator("#selected-count")).to_have_text("2 selected")
    page.locator("#bulk-job").select_option("greet")
    page.get_by_role("button", name="Run job").click()
    expect(page).to_have_url(re.compile(r"#/executions/[0-9a-f]+$"))
    expect(page.locator("#exec-status")).to_have_text("completed", timeout=30_000)
    expect(page.locator("#exec-counts")).to_contain_text("2 of 2 finished")


def test_a_viewer_cannot_select_agents(session: Any, secured: dict[str, Any]) -> None:
    page = signed_in(session, secured, "vera", "#/agents", DESK)
    expect(page.locator("tr[data-pc-id='web-1']")).to_be_visible()
    expect(page.locator("#select-all")).to_have_count(0)
    expect(page.get_by_label("Select web-1")).to_have_count(0)


# --- script text by role ---------------------------------------------------------------------


def run_adhoc(secured: dict[str, Any], script: str) -> str:
    otto = httpx.post(
        f"{secured['url']}/api/auth/login",
        json={"username": "otto", "password": PASSWORD},
        timeout=10,
    ).json()["token"]
    r = httpx.post(
        f"{secured['url']}/api/run",
        json={"script": script, "target": {"pcs": ["web-1"]}},
        headers={"Authorization": f"Bearer {otto}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["exec_id"])


@pytest.mark.parametrize("size", WIDTHS)
def test_operators_read_an_adhoc_script_viewers_only_its_digest(
    session: Any, secured: dict[str, Any], size: dict[str, int]
) -> None:
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    exec_id = run_adhoc(secured, f"echo {marker}\n")
    page = signed_in(session, secured, "olga", f"#/executions/{exec_id}", size)
    script = page.locator("#exec-script details.script")
    script.locator("summary").click()
    expect(script.locator("pre.script-text")).to_have_text(f"echo {marker}\n")
    expect(script.locator(".script-meta")).to_contain_text("sha256 ")
    shot(page, f"execution-script-{tag(size)}", page.locator("#exec-script"))

    viewer = signed_in(session, secured, "vera", f"#/executions/{exec_id}", size)
    expect(viewer.locator("#exec-script")).to_contain_text("shown to operators only")
    expect(viewer.locator("main")).not_to_contain_text(marker)


@pytest.mark.parametrize("size", WIDTHS)
def test_the_audit_log_names_verbs_shows_the_script_and_fits_a_phone(
    session: Any, secured: dict[str, Any], size: dict[str, int]
) -> None:
    marker = f"audited-{uuid.uuid4().hex[:8]}"
    exec_id = run_adhoc(secured, f"echo {marker}\n")
    page = signed_in(session, secured, "olga", "#/audit", size)
    page.get_by_label("Action").select_option("exec.create")
    expect(page).to_have_url(re.compile(r"#/audit\?action=exec.create$"))
    rows = page.locator("table[aria-label='Audit log'] tbody tr")
    expect(rows.first).to_have_attribute("data-action", "exec.create")
    actions = set(rows.evaluate_all("(trs) => trs.map((tr) => tr.dataset.action)"))
    assert actions == {"exec.create"}
    mine = page.locator(f"table[aria-label='Audit log'] details.script[data-exec-id='{exec_id}']")
    mine.locator("summary").click()
    expect(mine.locator("pre.script-text")).to_have_text(f"echo {marker}\n")
    # Whole areas, and never a route name with its method.
    page.get_by_label("Action").select_option("job.")
    expect(rows.first).to_have_attribute("data-action", re.compile(r"^job\."))
    page.get_by_label("Action").select_option("")
    expect(page.locator("tr[data-action='user.login']").first).to_be_attached()
    expect(page.locator("table[aria-label='Audit log']")).not_to_contain_text("put_job")
    expect(page.locator("table[aria-label='Audit log']")).not_to_contain_text("method=")
    if size is PHONE:
        assert_phone_friendly(page, "Audit log")
    shot(page, f"audit-{tag(size)}")


# --- approval: the script shown, Reject instead of Kill ---------------------------------------


@pytest.mark.parametrize("size", WIDTHS)
def test_an_approver_sees_the_script_and_can_reject_not_kill(
    session: Any, secured: dict[str, Any], size: dict[str, int]
) -> None:
    otto = httpx.post(
        f"{secured['url']}/api/auth/login",
        json={"username": "otto", "password": PASSWORD},
        timeout=10,
    ).json()["token"]
    r = httpx.post(
        f"{secured['url']}/api/exec/patch-web",
        json={"target": {"groups": ["web"]}},
        headers={"Authorization": f"Bearer {otto}"},
        timeout=10,
    )
    assert r.status_code == 201 and r.json()["status"] == "awaiting_approval", r.text
    exec_id = r.json()["exec_id"]

    page = signed_in(session, secured, "olga", f"#/executions/{exec_id}", size)
    expect(page.locator("#exec-status")).to_have_text("awaiting approval")
    box = page.locator("#approval")
    expect(box).to_contain_text("What you approve: patch-web v1")
    expect(box.locator("pre.script-text")).to_have_text(APPROVED_SCRIPT)
    expect(page.get_by_role("button", name="Kill")).to_have_count(0)
    expect(page.get_by_role("button", name="Reject")).to_be_visible()
    expect(page.get_by_role("button", name="Approve")).to_be_enabled()
    shot(page, f"approval-script-{tag(size)}")
    if size is PHONE:
        assert page.evaluate(PAGE_OVERFLOW) <= 1

    viewer = signed_in(session, secured, "vera", f"#/executions/{exec_id}", size)
    expect(viewer.locator("#approval")).to_contain_text("Waiting for approval")
    expect(viewer.locator("#approval")).to_contain_text("shown to operators only")
    for name in ("Kill", "Reject", "Approve"):
        expect(viewer.get_by_role("button", name=name)).to_have_count(0)

    page.get_by_role("button", name="Reject").click()
    expect(page.locator("#exec-status")).to_have_text("rejected")
    expect(page.locator("#exec-script pre.script-text")).to_have_count(0)  # closed by default
    expect(page.locator("#exec-script")).to_contain_text("Script of patch-web v1")


# --- every wide table at phone width ----------------------------------------------------------


def test_wide_tables_fit_a_phone(session: Any, secured: dict[str, Any]) -> None:
    page = signed_in(session, secured, "ada", "#/executions", PHONE)
    # The audit log first: its details column was the one squeezed to a character per line.
    for hash_ in ("#/audit", "#/executions", "#/approvals?state=", "#/agents", "#/jobs",
                  "#/results", "#/users", "#/agents/web-1"):  # fmt: skip
        page.goto(f"{secured['url']}/{hash_}")
        expect(page.locator(".page[data-ready]")).to_have_count(1)
        expect(page.locator("main table").first).to_be_visible()
        assert page.evaluate(NARROW_CELLS) == [], hash_
        assert page.evaluate(PAGE_OVERFLOW) <= 1, hash_
