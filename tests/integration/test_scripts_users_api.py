"""Issue #18 items 4 and 5 through the API (in-process backend, auth jwt, real nats-server,
real SQLite): an exec's script text by role, audit action names per verb (old names
renamed), user changes (role, disabled, password) and the results page's query errors."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_auth_api import PASSWORD, add_users, bearer, jwt_settings, login

from kanade.backend.inprocess import InProcessBackend, in_process_backend
from kanade.backend.store import results
from kanade.bus import Bus
from kanade.core import subjects
from kanade.core.digests import sha256_hex
from kanade.core.models.records import AuditRecord
from kanade.core.models.wire import encode
from polling import eventually as shared_eventually

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

eventually = functools.partial(shared_eventually, timeout=15.0)

ADHOC = "echo s3cr3t-marker\nexit 0\n"
OBJECT = b"echo from-object\n"


@pytest.fixture
async def backend(
    nats_url: str, tmp_path: Path, store_url: str
) -> AsyncIterator[InProcessBackend]:
    settings = jwt_settings(nats_url, store_url, tmp_path / "keys")
    async with in_process_backend(settings) as b:
        await add_users(b, "viewer", "operator", "admin")
        yield b


async def tokens(backend: InProcessBackend) -> dict[str, dict[str, str]]:
    return {r: bearer(await login(backend, r)) for r in ("viewer", "operator", "admin")}


async def test_script_text_is_for_operators_and_never_in_the_audit(
    backend: InProcessBackend, bus: Bus
) -> None:
    who = await tokens(backend)
    c = backend.client
    body = {"script": ADHOC, "shell": "bash", "target": {"pcs": ["pc-x"]}}
    # force: pc-x never reports (names nothing knows are refused otherwise)
    r = await c.post("/api/run?force=true", json=body, headers=who["operator"])
    assert r.status_code == 201, r.text
    exec_id = r.json()["exec_id"]

    r = await c.get(f"/api/executions/{exec_id}/script", headers=who["operator"])
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["text"] == ADHOC and got["shell"] == "bash" and got["source"] == "inline"
    assert got["sha256"] == sha256_hex(ADHOC.encode()) and got["size"] == len(ADHOC)
    assert got["truncated"] is False and got["note"] is None
    assert (await c.get(f"/api/executions/{exec_id}/script", headers=who["admin"])).json() == got

    # A viewer is refused the text (it may hold a secret) but sees which script ran.
    r = await c.get(f"/api/executions/{exec_id}/script", headers=who["viewer"])
    assert r.status_code == 403 and "needs role operator" in r.json()["error"]
    detail = (await c.get(f"/api/executions/{exec_id}", headers=who["viewer"])).json()
    assert detail["script_sha256"] == got["sha256"] and detail["script_shell"] == "bash"
    assert "s3cr3t" not in str(detail)

    async def created() -> list[dict[str, Any]] | None:
        page = (await c.get("/api/audit?action=exec.create", headers=who["admin"])).json()
        return page["items"] or None

    (audited,) = await eventually(created, "exec.create audited")
    assert audited["details"]["script_sha256"] == got["sha256"]
    assert "s3cr3t" not in str(audited)

    r = await c.get("/api/executions/nope/script", headers=who["operator"])
    assert r.status_code == 404 and "nope" in r.json()["error"]


async def test_a_script_object_is_read_from_the_store_and_checked(
    backend: InProcessBackend, bus: Bus
) -> None:
    who = await tokens(backend)
    c = backend.client
    store = await bus.obj(subjects.OBJ_SCRIPTS)
    await store.put("probe/1", OBJECT)
    job = {
        "id": "probe",
        "version": "1",
        "execute": {"shell": "sh", "script_object": "probe/1", "timeout": "10s"},
    }
    assert (await c.post("/api/jobs", json=job, headers=who["operator"])).status_code == 201
    r = await c.post(  # force: pc-x never reports
        "/api/exec/probe?force=true", json={"target": {"pcs": ["pc-x"]}}, headers=who["operator"]
    )
    assert r.status_code == 201, r.text
    exec_id = r.json()["exec_id"]
    got = (await c.get(f"/api/executions/{exec_id}/script", headers=who["operator"])).json()
    assert (got["source"], got["object"], got["text"]) == ("object", "probe/1", OBJECT.decode())
    assert got["sha256"] == sha256_hex(OBJECT)

    # Overwritten since: what the store holds now is not what ran, so it is not shown.
    await store.put("probe/1", b"echo something else\n")
    got = (await c.get(f"/api/executions/{exec_id}/script", headers=who["operator"])).json()
    assert got["text"] is None and "changed since" in got["note"]


async def test_audit_actions_are_per_verb_and_old_names_are_renamed(
    backend: InProcessBackend, bus: Bus
) -> None:
    who = await tokens(backend)
    c = backend.client
    listed = (await c.get("/api/audit/actions", headers=who["viewer"])).json()
    names = {a["action"] for a in listed["items"]}
    assert {"job.create", "job.update", "exec.create", "schedule.disable", "user.disable"} <= names
    assert listed["legacy"]["put_job"] == "job.put"

    # A record an older backend wrote (still in the stream): projected under the new name.
    old = AuditRecord(
        action="put_job",
        actor="old-backend",
        at=datetime.now(UTC),
        details={"method": "POST", "path": "/api/jobs", "params": {}, "status": 201},
    )
    await bus.publish_js(subjects.audit_subject("put_job"), encode(old))

    async def renamed() -> list[dict[str, Any]] | None:
        page = (await c.get("/api/audit?actor=old-backend", headers=who["admin"])).json()
        return page["items"] or None

    (row,) = await eventually(renamed, "the old record projected")
    assert row["action"] == "job.put"
    for query in ("job.put", "put_job", "job."):  # the name, the old name, the whole area
        page = (
            await c.get(f"/api/audit?actor=old-backend&action={query}", headers=who["admin"])
        ).json()
        assert page["total"] == 1, query
    r = await c.get(f"/api/audit?action={'x' * 129}", headers=who["admin"])
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "query.action"


async def test_an_admin_changes_roles_disables_and_resets_passwords(
    backend: InProcessBackend,
) -> None:
    who = await tokens(backend)
    c = backend.client
    admin = who["admin"]

    # The role applies to the very next request of a token issued before the change.
    r = await c.patch("/api/users/viewer", json={"role": "operator"}, headers=admin)
    assert r.status_code == 200 and r.json()["role"] == "operator", r.text
    assert (await c.get("/api/auth/me", headers=who["viewer"])).json()["role"] == "operator"

    # Disabled: the token dies at once and login is refused; enabled again: a new login
    # works, the session from before stays ended.
    r = await c.patch("/api/users/operator", json={"disabled": True}, headers=admin)
    assert r.status_code == 200 and r.json()["disabled_at"] and r.json()["disabled_by"] == "admin"
    r = await c.get("/api/agents", headers=who["operator"])
    assert r.status_code == 401 and "disabled" in r.json()["error"]
    r = await c.post("/api/auth/login", json={"username": "operator", "password": PASSWORD})
    assert r.status_code == 401 and "disabled" in r.json()["error"]
    listed = {u["username"]: u for u in (await c.get("/api/users", headers=admin)).json()["items"]}
    assert listed["operator"]["disabled_at"] and listed["viewer"]["disabled_at"] is None
    r = await c.patch("/api/users/operator", json={"disabled": False}, headers=admin)
    assert r.status_code == 200 and r.json()["disabled_at"] is None
    assert (await c.get("/api/agents", headers=who["operator"])).status_code == 401
    before_reset = bearer(await login(backend, "operator"))
    assert (await c.get("/api/agents", headers=before_reset)).status_code == 200

    # A password reset: the old one stops working, and so does every session opened with it.
    new_password = "another-pass-456"
    r = await c.patch("/api/users/operator", json={"password": new_password}, headers=admin)
    assert r.status_code == 200
    r = await c.post("/api/auth/login", json={"username": "operator", "password": PASSWORD})
    assert r.status_code == 401
    assert (await c.get("/api/agents", headers=before_reset)).status_code == 401
    after_reset = bearer(await login(backend, "operator", new_password))
    assert (await c.get("/api/agents", headers=after_reset)).status_code == 200
    # A role change is no reason to sign anyone out.
    r = await c.patch("/api/users/operator", json={"role": "viewer"}, headers=admin)
    assert (await c.get("/api/auth/me", headers=after_reset)).json()["role"] == "viewer"
    r = await c.patch("/api/users/operator", json={"role": "operator"}, headers=admin)

    # Never without an admin who can sign in.
    for change in ({"role": "viewer"}, {"disabled": True}):
        r = await c.patch("/api/users/admin", json=change, headers=admin)
        assert r.status_code == 409 and "last admin" in r.json()["error"], change

    async def changes() -> list[tuple[str, dict[str, Any]]] | None:
        items = (await c.get("/api/audit?action=user.&limit=50", headers=admin)).json()["items"]
        logins = ("user.login", "user.login_fail")  # the old password, refused, is one
        got = [(a["action"], a["details"]) for a in reversed(items) if a["action"] not in logins]
        return got if len(got) == 6 else None

    assert await eventually(changes, "user changes audited") == [
        ("user.role_set", {"username": "viewer", "from": "viewer", "to": "operator"}),
        ("user.disable", {"username": "operator"}),
        ("user.enable", {"username": "operator"}),
        ("user.password_reset", {"username": "operator"}),
        ("user.role_set", {"username": "operator", "from": "operator", "to": "viewer"}),
        ("user.role_set", {"username": "operator", "from": "viewer", "to": "operator"}),
    ]


@pytest.mark.parametrize(
    ("body", "path", "reason"),
    [
        ({}, "(body)", "nothing to change"),
        ({"role": "root"}, "role", "must be"),
        ({"password": "x"}, "password", ""),
        ({"disabled": "maybe"}, "disabled", "boolean"),
        ({"role": "viewer", "colour": "red"}, "colour", "unknown field"),
    ],
)
async def test_a_bad_user_change_names_the_field(
    backend: InProcessBackend, body: dict[str, Any], path: str, reason: str
) -> None:
    admin = bearer(await login(backend, "admin"))
    r = await backend.client.patch("/api/users/viewer", json=body, headers=admin)
    assert r.status_code == 400, r.text
    (err,) = r.json()["errors"]
    assert err["path"] == path and reason in err["reason"]


async def test_user_changes_need_an_admin_and_an_existing_user(
    backend: InProcessBackend,
) -> None:
    who = await tokens(backend)
    r = await backend.client.patch(
        "/api/users/viewer", json={"role": "admin"}, headers=who["operator"]
    )
    assert r.status_code == 403
    r = await backend.client.patch("/api/users/ghost", json={"role": "admin"}, headers=who["admin"])
    assert r.status_code == 404 and "ghost" in r.json()["error"]


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("status=broken", "query.status"),
        ("since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "query.until"),
        ("since=yesterday", "query.since"),
        (f"q={'x' * 129}", "query.q"),
    ],
)
async def test_a_bad_results_query_names_the_parameter(
    backend: InProcessBackend, query: str, path: str
) -> None:
    viewer = bearer(await login(backend, "viewer"))
    r = await backend.client.get(f"/api/results?{query}", headers=viewer)
    assert r.status_code == 400, r.text
    assert [e["path"] for e in r.json()["errors"]] == [path]


async def test_results_are_filtered_and_paged_by_the_api(backend: InProcessBackend) -> None:
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def result(n: int, pc: str, exit_code: int) -> dict[str, Any]:
        return {
            "result_id": f"r{n:03}", "exec_id": "e1", "request_id": "q1", "pc_id": pc,
            "job_id": "nightly", "version": "1", "state": "finished", "exit_code": exit_code,
            "skipped": False, "stdout": "", "stderr": "", "stdout_bytes": 0, "stderr_bytes": 0,
            "stdout_ref": None, "stderr_ref": None, "started_at": at, "finished_at": at,
            "attempts": 1, "note": None, "schedule_id": None, "nominal_time": None,
            "recorded_at": at + timedelta(minutes=n), "timeout_s": None,
        }  # fmt: skip

    rows = [result(n, f"web-{n % 3}", 0 if n % 4 else 2) for n in range(60)]
    await backend.services.db.write(lambda conn: results.upsert_finished(conn, rows))
    viewer = bearer(await login(backend, "viewer"))

    async def page(query: str) -> dict[str, Any]:
        r = await backend.client.get(f"/api/results?{query}", headers=viewer)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    failed = await page("status=failed&limit=5&offset=5")
    assert failed["total"] == 15 and [x["result_id"] for x in failed["items"]] == [
        "r036", "r032", "r028", "r024", "r020",
    ]  # fmt: skip
    assert (await page("q=WEB-1"))["total"] == 20
    since, until = at + timedelta(minutes=10), at + timedelta(minutes=20)
    window = await page(
        f"since={since:%Y-%m-%dT%H:%M:%SZ}&until={until:%Y-%m-%dT%H:%M:%SZ}&status=ok"
    )
    assert window["total"] == 8  # minutes 10..19, less 12 and 16 (exit 2)
