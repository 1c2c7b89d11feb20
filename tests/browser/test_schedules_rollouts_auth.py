"""Approvals and roles on the schedules / rollouts / approvals pages (SPEC §4.8, §4.10, §6).

A broker, a ``kanade-backend --auth jwt`` and two real agents (web-1, web-2), as in
``test_auth``. Users: vera (viewer), otto and olga (operators). otto requests an exec of a
``require_approval`` job through the API; olga approves it in the browser (the two-person
rule: otto's own Approve button is disabled). vera sees every new page without a single
action button.
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
from test_auth import EXPECTED_401, PASSWORD, login

from polling import wait_until
from stack import BackendStack, secret_file, start_backend, stop_backend

ADMIN_TOKEN = "browser-test-static-token-" + uuid.uuid4().hex
JWT_SECRET = uuid.uuid4().hex + uuid.uuid4().hex
APPROVAL_JOB = "patch-web"
FLAKY_JOB = "flaky-web"
SCHEDULE = "web-nightly"
ACTIONS = [
    "Approve",
    "Reject",
    "Disable…",
    "Enable",
    "Resume",
    "Abort…",
    "Kill",
    "Freeze scheduled fires",
    "Clear freeze",
]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base: Path = tmp_path_factory.mktemp("browser-approvals")
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
            for user, role in (("vera", "viewer"), ("otto", "operator"), ("olga", "operator")):
                r = http.post(
                    "/api/users", json={"username": user, "password": PASSWORD, "role": role}
                )
                assert r.status_code == 201, r.text
            marker = base / "flaky-ran-once"
            for job in (
                {
                    "id": APPROVAL_JOB,
                    "version": "1",
                    "require_approval": True,
                    "execute": {"shell": "sh", "script": "echo patched", "timeout": "10s"},
                },
                {
                    "id": FLAKY_JOB,
                    "version": "1",
                    "execute": {
                        "shell": "sh",
                        "script": f"[ -e {marker} ] && echo ok || {{ touch {marker}; exit 1; }}",
                        "timeout": "10s",
                    },
                },
            ):
                assert http.post("/api/jobs", json=job).status_code in (200, 201)
            schedule = {
                "id": SCHEDULE,
                "job_id": FLAKY_JOB,
                "when": {"calendar": {"at": "03:17"}},
                "target": {"groups": ["web"]},
                "tz": "UTC",
            }
            assert http.post("/api/schedules", json=schedule).status_code == 201
            wait_until(
                lambda: {"web-1", "web-2"}
                <= {a["pc_id"] for a in http.get("/api/agents").json()["items"]},
                "agents web-1 and web-2 checked in",
                timeout=30,
            )
            # otto asks for a rollout that halts after its first wave (fails once).
            otto = {"Authorization": f"Bearer {_token('otto', stack)}"}
            r = http.post(
                f"/api/exec/{FLAKY_JOB}",
                headers=otto,
                json={
                    "target": {"groups": ["web"]},
                    "rollout": {
                        "waves": [{"pcs": ["web-1"]}, {"pcs": ["web-2"]}],
                        "halt_on_failure_rate": 0.5,
                    },
                },
            )
            assert r.status_code == 201, r.text
            halted = r.json()["rollout_id"]
        yield {"stack": stack, "halted": halted, "otto": otto}
    finally:
        stop_backend(stack)


def _token(user: str, stack: BackendStack) -> str:
    r = httpx.post(
        f"{stack.url}/api/auth/login", json={"username": user, "password": PASSWORD}, timeout=10
    )
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def _request_approval(secured: dict[str, Any]) -> str:
    stack: BackendStack = secured["stack"]
    r = httpx.post(
        f"{stack.url}/api/exec/{APPROVAL_JOB}",
        headers=secured["otto"],
        json={"target": {"groups": ["web"]}},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "awaiting_approval"
    return str(r.json()["exec_id"])


@pytest.fixture
def auth_page(browser: Browser) -> Iterator[tuple[Page, ConsoleWatch]]:
    page, watch = new_page(browser, viewport={"width": 1280, "height": 900})
    watch.allow(EXPECTED_401)
    try:
        yield page, watch
    finally:
        page.context.close()
    assert watch.unexpected() == []


def test_another_operator_approves_in_the_ui(
    auth_page: tuple[Page, ConsoleWatch], secured: dict[str, Any]
) -> None:
    page, _ = auth_page
    stack: BackendStack = secured["stack"]
    exec_id = _request_approval(secured)
    # The requester cannot approve his own request (the button says why).
    page.goto(f"{stack.url}/#/executions/{exec_id}")
    login(page, "otto")
    expect(page.locator("#exec-status")).to_have_text("awaiting approval")
    expect(page.locator("#approval")).to_contain_text("Requested by otto")
    expect(page.get_by_role("button", name="Approve")).to_be_disabled()
    page.get_by_role("button", name="Log out").click()
    # Logging out is asynchronous (it revokes the token first, then shows the sign-in
    # form); navigating before it finishes would be overtaken by that redirect.
    expect(page).to_have_url(re.compile(r"#/login$"))

    page.goto(f"{stack.url}/#/approvals")
    login(page, "olga")
    row = page.locator(f"table[aria-label='Approvals'] tr[data-exec-id='{exec_id}']")
    expect(row).to_contain_text("otto")
    row.get_by_role("link").first.click()
    expect(page.locator("#exec-status")).to_have_text("awaiting approval")
    page.get_by_role("button", name="Approve").click()
    # Sent at once to both agents; the page follows it to the end by itself.
    expect(page.locator("#exec-status")).to_have_text("completed", timeout=15_000)
    expect(page.locator("#exec-counts")).to_contain_text("2 of 2 finished")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    approval = httpx.get(
        f"{stack.url}/api/approvals/{exec_id}", headers=secured["otto"], timeout=10
    ).json()
    assert approval["state"] == "approved"
    assert approval["decided_by"] == "olga"


def test_reject_with_a_reason(
    auth_page: tuple[Page, ConsoleWatch], secured: dict[str, Any]
) -> None:
    page, _ = auth_page
    stack: BackendStack = secured["stack"]
    exec_id = _request_approval(secured)
    page.goto(f"{stack.url}/#/executions/{exec_id}")
    login(page, "olga")
    page.get_by_placeholder("why not (optional)").fill("not during business hours")
    page.get_by_role("button", name="Reject").click()
    expect(page.locator("#exec-status")).to_have_text("rejected")
    expect(page.locator("#approval")).to_contain_text("Rejected by olga", timeout=5_000)
    expect(page.locator("#approval")).to_contain_text("not during business hours")


def test_a_viewer_sees_no_actions(
    auth_page: tuple[Page, ConsoleWatch], secured: dict[str, Any]
) -> None:
    page, _ = auth_page
    stack: BackendStack = secured["stack"]
    exec_id = _request_approval(secured)
    page.goto(f"{stack.url}/#/schedules")
    login(page, "vera")
    expect(page.locator("#user")).to_have_text("vera · viewer")
    checks = [
        ("#/schedules", f"tr[data-schedule-id='{SCHEDULE}']"),
        (f"#/schedules/{SCHEDULE}", "table[aria-label='Next fires'] tbody tr"),
        ("#/rollouts", f"tr[data-rollout-id='{secured['halted']}']"),
        (f"#/rollouts/{secured['halted']}", "#rollout-status:has-text('halted')"),
        ("#/approvals", f"tr[data-exec-id='{exec_id}']"),
        (f"#/executions/{exec_id}", "#approval:has-text('Waiting for approval')"),
        ("#/", "#freeze-banner"),
    ]
    for hash_, shown in checks:
        page.goto(f"{stack.url}/{hash_}")
        expect(page.locator(shown).first).to_be_attached(timeout=15_000)
        expect(page.locator(".page[data-ready]")).to_have_count(1)
        for name in ACTIONS:
            expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    # The halted rollout explains itself even to a viewer.
    page.goto(f"{stack.url}/#/rollouts/{secured['halted']}")
    expect(page.locator("#rollout-reason")).to_contain_text("exceeds halt_on_failure_rate")
    page.goto(f"{stack.url}/#/schedules")
    expect(page.locator("#freeze-panel")).to_contain_text("Not frozen")
    expect(page.get_by_label("Reason")).to_have_count(0)
