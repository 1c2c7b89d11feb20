"""Issue #15 item 8 against a real ``kanade-backend`` process (auth jwt): the two-person rule
of an approval-gated job (SPEC §4.8) cannot be bypassed by an operator.

Before: an operator re-posted a gated job as a new version with ``require_approval: false``
and exec'd it at once, or sent the same script through ``/api/run``. Now removing the gate
(a new version without it, or deleting the job to re-create it) needs an admin and is
audited, and ``--adhoc-run-role admin`` keeps operators to catalog jobs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from rollout_stack import Backend, Stack, job, wait_for

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

SCRIPT = "echo production change"


@pytest.fixture(scope="module")
def users(module_stack: Stack) -> Stack:
    """One broker and database for the module, with an operator and an admin."""
    for name, role in (("op", "operator"), ("adm", "admin")):
        module_stack.add_user(name, role)
    return module_stack


@pytest.fixture(scope="module")
def default(users: Stack) -> Backend:
    """A backend with the default settings (jwt), shared by the module's tests: no test
    changes what another relies on (each its own job and ad-hoc run)."""
    return users.backend(jwt=True)


@pytest.fixture
def stack(users: Stack) -> Iterator[Stack]:
    yield from users.for_one_test()


def timed_post(b: Backend, path: str, body: Any, token: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    r = b.post(path, body, token)
    return r.status_code, r.text, (time.monotonic() - t0) * 1000


def delete(b: Backend, path: str, token: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    with b.client(token) as h:
        r = h.delete(path)
    return r.status_code, r.text, (time.monotonic() - t0) * 1000


def test_only_an_admin_removes_a_jobs_approval(default: Backend) -> None:
    b = default
    op, adm = b.login("op"), b.login("adm")
    gated = job("deploy", SCRIPT, version="1", require_approval=True)
    assert b.post("/api/jobs", gated, op).status_code == 201
    answers: dict[str, float] = {}

    # An operator cannot store a version without the gate …
    code, text, answers["new version without the gate"] = timed_post(
        b, "/api/jobs", job("deploy", SCRIPT, version="2"), op
    )
    assert code == 403, text
    assert "only an admin may store a version without require_approval" in text
    assert b.get("/api/jobs/deploy", op)["version"] == "1"
    # … nor delete the job to re-create it without the gate.
    code, text, answers["delete the gated job"] = delete(b, "/api/jobs/deploy", op)
    assert code == 403 and "only an admin may delete it" in text
    # Raising or keeping the gate needs nothing special,
    bumped = job("deploy", SCRIPT, version="2", require_approval=True)
    assert b.post("/api/jobs", bumped, op).status_code == 201
    # and the exec still waits for another person.
    # force: pc-1 never reports (names nothing knows are refused otherwise)
    held = b.post_ok("/api/exec/deploy?force=true", {"target": {"pcs": ["pc-1"]}}, op)
    assert held["status"] == "awaiting_approval"

    # An admin may lower it; the audit log says who, from which version.
    lowered = job("deploy", SCRIPT, version="3")
    assert b.post("/api/jobs", lowered, adm).status_code == 201

    def audited() -> list[dict[str, Any]]:
        return list(b.get("/api/audit", adm, action="job.approval_lower")["items"])

    (entry,) = wait_for(audited, what="the lowering audited")
    assert entry["actor"] == "adm"
    assert entry["details"] == {"job_id": "deploy", "from_version": "2", "version": "3"}
    assert all(ms < 1000 for ms in answers.values()), answers
    print(json.dumps({"approval_policy": "403 answers", "ms": {k: round(v, 1)
                                                                 for k, v in answers.items()}}))


def test_adhoc_runs_follow_the_setting(stack: Stack, default: Backend) -> None:
    run = {"script": SCRIPT, "target": {"pcs": ["pc-1"]}}
    forced = "/api/run?force=true"  # pc-1 never reports (names nothing knows are refused)
    assert default.post(forced, run, default.login("op")).status_code == 201

    b = stack.backend("--adhoc-run-role", "admin", jwt=True)
    code, text, ms = timed_post(b, forced, run, b.login("op"))
    assert code == 403 and "ad-hoc runs need role admin" in text
    assert b.post(forced, run, b.login("adm")).status_code == 201
    print(json.dumps({"adhoc_run_role": "403 answer", "ms": round(ms, 1)}))
