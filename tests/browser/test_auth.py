"""The dashboard with auth on (SPEC §4.10, §6): login, logout, roles hide actions.

A broker, a ``kanade-backend --auth jwt`` and one real agent; users are created
through ``/api/users`` with the static admin token. The backend caps inline output
at 256 bytes here, so a longer stdout goes to the object store and the result page
offers the full output.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from browser_pages import ConsoleWatch, new_page
from playwright.sync_api import Browser, Page, expect

from stack import BackendStack, secret_file, start_backend, stop_backend

ADMIN_TOKEN = "browser-test-static-token-" + uuid.uuid4().hex
JWT_SECRET = uuid.uuid4().hex + uuid.uuid4().hex
PASSWORD = "correct-horse-battery"
JOB = "greet"
# A signed-out page asks /api/auth/me and gets 401: expected, and Chrome logs it.
EXPECTED_401 = "status of 401"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendStack]:
    base: Path = tmp_path_factory.mktemp("browser-auth")
    stack = start_backend(
        base,
        "--auth",
        "jwt",
        "--jwt-secret-file",
        str(secret_file(base / "jwt-secret", JWT_SECRET)),
        "--auth-token-file",
        str(secret_file(base / "admin-token", ADMIN_TOKEN)),
        "--max-output-bytes",
        "256",
    )
    try:
        stack.start_agent("web-1", "web")
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=stack.url, headers=headers, timeout=10) as http:
            for user, role in (("vera", "viewer"), ("otto", "operator")):
                r = http.post(
                    "/api/users", json={"username": user, "password": PASSWORD, "role": role}
                )
                assert r.status_code == 201, r.text
            job = {
                "id": JOB,
                "version": "1",
                "execute": {"shell": "sh", "script": "echo hi", "timeout": "10s"},
            }
            assert http.post("/api/jobs", json=job).status_code in (200, 201)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                items = http.get("/api/agents").json()["items"]
                if any(a["pc_id"] == "web-1" and a["status"] == "alive" for a in items):
                    break
                time.sleep(0.1)
            else:
                pytest.fail("agent web-1 did not check in")
        yield stack
    finally:
        stop_backend(stack)


@pytest.fixture
def auth_page(browser: Browser) -> Iterator[tuple[Page, ConsoleWatch]]:
    page, watch = new_page(browser, viewport={"width": 1280, "height": 900})
    watch.allow(EXPECTED_401)
    try:
        yield page, watch
    finally:
        page.context.close()
    assert watch.unexpected() == []


def login(page: Page, user: str, password: str = PASSWORD) -> None:
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_login_logout_and_a_viewer_sees_no_actions(
    auth_page: tuple[Page, ConsoleWatch], secured: BackendStack
) -> None:
    page, _ = auth_page
    page.goto(f"{secured.url}/#/jobs/{JOB}")
    expect(page).to_have_url(re.compile(r"#/login\?next="))
    expect(page.locator("#auth-badge")).to_have_text("")  # auth is on: no warning badge
    login(page, "vera", "wrong-password-here")
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    login(page, "vera")
    # Back where the viewer wanted to go, signed in, with the live stream running.
    expect(page.locator("main h1")).to_contain_text(f"Job {JOB}")
    expect(page.locator("#user")).to_have_text("vera · viewer")
    expect(page.locator("#live-status")).to_have_text("Live")
    expect(page.get_by_text("Your role can read jobs but not run them.")).to_be_visible()
    expect(page.get_by_role("button", name="Run job")).to_have_count(0)
    expect(page.get_by_role("button", name="Revoke")).to_have_count(0)
    expect(page.get_by_role("link", name="Run script")).to_be_hidden()
    page.goto(f"{secured.url}/#/agents/web-1")
    expect(page.locator("main h1")).to_contain_text("Agent web-1")
    expect(page.get_by_role("button", name="Ping")).to_have_count(0)
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"#/login$"))
    assert page.evaluate("sessionStorage.getItem('kanade.token')") is None
    page.goto(f"{secured.url}/#/agents")
    expect(page).to_have_url(re.compile(r"#/login\?next=agents"))


def test_operator_runs_a_script_and_loads_the_full_output(
    auth_page: tuple[Page, ConsoleWatch], secured: BackendStack
) -> None:
    page, _ = auth_page
    page.goto(f"{secured.url}/#/run")
    login(page, "otto")
    expect(page.locator("main h1")).to_have_text("Run a script")
    expect(page.locator("#user")).to_have_text("otto · operator")
    # 2 000 x's and a newline: more than the 256-byte inline cap.
    page.get_by_label("Script", exact=True).fill(
        "printf 'x%.0s' $(seq 2000); echo; echo tail-marker"
    )
    page.get_by_label("PCs", exact=True).fill("web-1")
    page.get_by_role("button", name="Run script").click()
    expect(page).to_have_url(re.compile(r"#/executions/[0-9a-f]+$"))
    expect(page.locator("#exec-status")).to_have_text("completed", timeout=15_000)
    expect(page.get_by_role("button", name="Kill")).to_have_count(0)  # nothing left to kill
    page.locator("table[aria-label='Results per PC'] tbody tr").first.get_by_role("link").nth(
        1
    ).click()
    out = page.get_by_label("Standard output")
    expect(out).not_to_contain_text("tail-marker")  # the inline head only
    page.get_by_role("button", name="Load full stdout").click()
    expect(out).to_contain_text("tail-marker")
    expect(page.get_by_role("link", name="download")).to_be_visible()
    # Operators see the job's actions.
    page.goto(f"{secured.url}/#/jobs/{JOB}")
    expect(page.get_by_role("button", name="Run job")).to_be_visible()
    expect(page.get_by_role("button", name="Revoke")).to_be_visible()
