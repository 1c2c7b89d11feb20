"""Approvals and unattended runs (SPEC §4.8), and admin-only urgent execs (§3.4), against
a real ``kanade-backend`` process in JWT mode with several users, a real broker, a stub
swarm and the ``kanade`` CLI.

* an exec of a ``require_approval`` job waits in ``awaiting_approval`` and publishes
  nothing; its requester cannot approve it (403), a viewer cannot (403, the role table),
  a different operator can — then it is published and completes;
* a rejected request is never published and cannot be approved afterwards (409);
* a request older than ``--approval-ttl`` becomes ``rejected`` with reason ``expired``
  (the backend is restarted on the same database with a 2 s TTL);
* a schedule cannot fire the job (each fire is skipped with the reason) until an operator
  approves its version for unattended runs; then it fires, without waiting for approval;
* ``urgent: true`` is refused to an operator (403) and accepted from an admin;
* every step is in the audit log with its actor.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import nats
import pytest
from agent_harness import eventually
from rollout_stack import BIN, CommandLog, Stack, job

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

GATED = job("gated", "echo gated", require_approval=True)


def kanade(url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kanade"), *args, "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KANADE_TOKEN": token},
    )


def audited(b: Any, token: str, action: str) -> list[dict[str, Any]]:
    return b.get("/api/audit", token=token, action=action, limit=1000)["items"]


async def test_two_person_approval_expiry_unattended_and_urgent(stack: Stack) -> None:
    for name, role in [("alice", "operator"), ("bob", "operator"), ("vera", "viewer"),
                       ("root", "admin")]:  # fmt: skip
        stack.add_user(name, role)
    b = stack.backend("--approval-ttl", "1h", jwt=True)
    alice, bob, vera, root = (b.login(u) for u in ("alice", "bob", "vera", "root"))
    stack.swarm(2, prefix="ap-")
    await eventually(
        lambda: len(b.get("/api/agents", root, status="alive")["items"]) >= 2,
        what="2 agents alive",
    )
    assert b.post("/api/jobs", GATED, alice).status_code == 201
    assert b.post("/api/jobs", job("hello", "echo hi"), alice).status_code == 201
    nc = await nats.connect(stack.broker.url, **stack.nats_options())
    log = await CommandLog(nc).start()
    try:
        target = {"target": {"all": True}}

        # --- request → self-approval refused → viewer refused → another operator ----------
        created = b.post_ok("/api/exec/gated", target, alice)
        eid = created["exec_id"]
        assert created["status"] == "awaiting_approval" and created["expected_count"] == 2
        row = b.get(f"/api/executions/{eid}", bob, results="false")
        assert row["status"] == "awaiting_approval" and row["initiated_by"] == "alice"
        assert b.get(f"/api/approvals/{eid}", vera)["state"] == "pending"
        mine = b.post(f"/api/executions/{eid}/approve", None, alice)
        assert mine.status_code == 403 and "different operator" in mine.json()["error"]
        assert b.post(f"/api/executions/{eid}/approve", None, vera).status_code == 403
        assert b.post(f"/api/executions/{eid}/reject", {"reason": "x"}, vera).status_code == 403
        assert log.for_exec(eid) == []  # nothing was published while waiting
        out = kanade(b.url, bob, "approve", eid)
        assert out.returncode == 0, out.stderr

        def done(exec_id: str) -> bool:
            return b.get(f"/api/executions/{exec_id}", bob, results="false")["status"] == (
                "completed"
            )

        await eventually(lambda: done(eid), what="approved exec completed")
        await eventually(lambda: len(log.for_exec(eid)) == 1, what="one command logged")
        approval = b.get(f"/api/approvals/{eid}", vera)
        assert approval["state"] == "approved" and approval["decided_by"] == "bob"
        assert b.post(f"/api/executions/{eid}/approve", None, bob).status_code == 409

        # --- rejected: never published, cannot be approved afterwards --------------------
        second = b.post_ok("/api/exec/gated", target, alice)["exec_id"]
        out = kanade(b.url, bob, "reject", second, "--reason", "not during business hours")
        assert out.returncode == 0, out.stderr
        assert b.get(f"/api/executions/{second}", bob, results="false")["status"] == "rejected"
        late = b.post(f"/api/executions/{second}/approve", None, bob)
        assert late.status_code == 409 and "rejected" in late.json()["error"]
        assert log.for_exec(second) == []

        # --- a require_approval job in a rollout starts its waves only once approved -------
        wave = {**target, "rollout": {"waves": [{"percent": 50}, {"percent": 100}]}}
        rolled = b.post_ok("/api/exec/gated", wave, alice)
        assert b.get(f"/api/rollouts/{rolled['rollout_id']}", vera)["status"] == (
            "awaiting_approval"
        )
        b.post_ok(f"/api/executions/{rolled['exec_id']}/approve", None, bob)
        await eventually(lambda: done(rolled["exec_id"]), what="approved rollout completed")
        await eventually(
            lambda: b.get(f"/api/rollouts/{rolled['rollout_id']}", vera)["status"] == "completed",
            what="rollout completed",
        )

        # --- urgent is admin-only ---------------------------------------------------------
        urgent = {**target, "urgent": True}
        refused = b.post("/api/exec/hello", urgent, alice)
        assert refused.status_code == 403 and "admin" in refused.json()["error"]
        ok = b.post_ok("/api/exec/hello", urgent, root)
        await eventually(lambda: len(log.for_exec(ok["exec_id"])) == 1, what="urgent sent")
        assert log.for_exec(ok["exec_id"])[0][1].urgent is True

        # --- schedules: skipped until the version is approved for unattended runs --------
        schedule = {
            "id": "gated-every-second",
            "job_id": "gated",
            "when": {"cron": "* * * * * *"},
            "target": {"all": True},
            "tz": "utc",
        }
        assert b.post("/api/schedules", schedule, alice).status_code == 201

        def skipped() -> list[dict[str, Any]]:
            st = b.get("/api/schedules/gated-every-second", vera, decisions=50)
            return [d for d in st["decisions"] if d["result"] == "skipped"]

        skips = await eventually(skipped, what="unapproved fire skipped")
        assert skips[0]["reason"] == "requires_approval"
        assert "version '1' is not approved for unattended runs" in skips[0]["detail"]
        assert (
            b.post("/api/jobs/gated/versions/1/approve-unattended", None, vera).status_code == 403
        )
        wrong = b.post("/api/jobs/gated/versions/7/approve-unattended", None, bob)
        assert wrong.status_code == 409
        out = kanade(b.url, bob, "job", "approve-unattended", "gated", "1")
        assert out.returncode == 0, out.stderr

        def fired() -> list[dict[str, Any]]:
            items = b.get("/api/executions", vera, job_id="gated", limit=1000)["items"]
            return [e for e in items if e["schedule_id"] == "gated-every-second"]

        fires = await eventually(fired, what="approved version fired by the schedule")
        assert all(e["status"] != "awaiting_approval" for e in fires)
        assert b.post("/api/schedules/gated-every-second/disable", None, bob).status_code == 200

        # --- audit: every step with its actor ---------------------------------------------
        assert [a["actor"] for a in audited(b, vera, "approve")] == ["bob", "bob"]
        assert [a["actor"] for a in audited(b, vera, "reject")] == ["bob"]
        assert [a["actor"] for a in audited(b, vera, "approve_unattended")] == ["bob"]
        requests = [a for a in audited(b, vera, "exec") if a["details"]["job_id"] == "gated"]
        assert {a["actor"] for a in requests if not a["actor"].startswith("schedule:")} == {"alice"}

        # --- expiry: a 2 s TTL on a restarted backend (same database) --------------------
        b.stop()
        b2 = stack.backend("--approval-ttl", "2s", jwt=True)
        alice, bob = b2.login("alice"), b2.login("bob")
        stale = b2.post_ok("/api/exec/gated", target, alice)["exec_id"]

        def expired() -> dict[str, Any] | None:
            a = b2.get(f"/api/approvals/{stale}", bob)
            return a if a["state"] == "rejected" else None

        a = await eventually(expired, what="approval expired")
        assert a["reason"] == "expired" and a["decided_by"] == "system:approvals"
        assert b2.get(f"/api/executions/{stale}", bob, results="false")["status"] == "rejected"
        assert b2.post(f"/api/executions/{stale}/approve", None, bob).status_code == 409
        assert [x["details"]["exec_id"] for x in audited(b2, bob, "approval_expired")] == [stale]
        assert log.for_exec(stale) == []
    finally:
        await log.close()
        await nc.close()
