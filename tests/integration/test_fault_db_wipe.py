"""A wiped database comes back whole (SPEC §1.3, §4.3, §7, §10.3; issue #14 item 4), with
real processes: a broker, ``kanade-backend`` processes on one SQLite file, a swarm of agents
running real scripts.

Before the wipe: users (jwt auth), execs that completed, failed and were cancelled, an
exec waiting for approval and one approved and run, an unattended-run approval, a central
schedule with fired and frozen (skipped) decisions, and a rollout whose second wave waits.
The backend is SIGKILLed, the database file removed, a new backend started: every row of
interest is equal to before (statuses included), the users can log in, and the rollout
sends its second wave once — never the first again. Prints the §10.3 JSON line.

The slow variant wipes three times in a row, each rebuild compared with the first.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import nats
import pytest
from agent_harness import eventually
from rollout_stack import Backend, CommandLog, Stack, alive, job
from wipe_tables import differences, dump, wipe

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

N_AGENTS = 4
PCS = [f"w-{i}" for i in range(N_AGENTS)]


def wave_delay_s(wipes: int, start_s: float) -> int:
    """How long the second wave waits: every rebuild happens meanwhile. A rebuild is a
    backend start, three logins and a table dump: on this machine, at its present load,
    a small multiple of how long the first backend took to start (measured, not guessed —
    a fixed 25 s left an idle machine waiting 20 s after a 2 s rebuild)."""
    return math.ceil(5 + 3 * start_s * wipes)


def _written(b: Backend, token: str) -> bool:
    """Every operator-state change is in the broker (``kanade_state_backlog`` 0; a backend
    without that gauge has nothing to write)."""
    with b.client(token) as h:
        text = h.get("/metrics").text
    backlog = [line for line in text.splitlines() if line.startswith("kanade_state_backlog ")]
    return not backlog or backlog == ["kanade_state_backlog 0.0"]


def _exec(b: Backend, token: str, job_id: str, **body: Any) -> str:
    return str(b.post_ok(f"/api/exec/{job_id}", {"target": {"pcs": PCS}, **body}, token)["exec_id"])


def _status(b: Backend, token: str, exec_id: str) -> dict[str, Any]:
    return dict(b.get(f"/api/executions/{exec_id}", token, results="false"))


async def _until(b: Backend, token: str, exec_id: str, status: str, **counts: int) -> None:
    def ok() -> bool:
        s = _status(b, token, exec_id)
        return s["status"] == status and all(s[k] >= v for k, v in counts.items())

    await eventually(ok, what=f"{exec_id} {status} {counts}", timeout=40)


async def _operator_day(
    stack: Stack, b: Backend, tokens: dict[str, str], delay_s: int
) -> dict[str, str]:
    """Everything an operator's day leaves in the database; the ids to follow."""
    alice, bob, root = tokens["alice"], tokens["bob"], tokens["root"]
    for doc in (job("ok", "echo ok"), job("fail", "echo no >&2; exit 3"),
                job("slow", "sleep 60"), job("gated", "echo gated", require_approval=True),
                job("roll", "echo rolled")):  # fmt: skip
        assert b.post("/api/jobs", doc, alice).status_code == 201
    ids = {
        "ok": _exec(b, alice, "ok"),
        "fail": _exec(b, alice, "fail"),
        "slow": _exec(b, alice, "slow"),
        "waiting": _exec(b, alice, "gated"),
        "approved": _exec(b, alice, "gated"),
    }
    await _until(b, alice, ids["slow"], "running", started_count=N_AGENTS)
    assert b.post(f"/api/executions/{ids['slow']}/kill", None, bob).status_code == 200
    b.post_ok(f"/api/executions/{ids['approved']}/approve", None, bob)
    b.post_ok("/api/jobs/gated/versions/1/approve-unattended", None, bob)
    for key in ("ok", "fail", "approved"):
        await _until(b, alice, ids[key], "completed", finished_count=N_AGENTS)
    await _until(b, alice, ids["slow"], "cancelled", finished_count=N_AGENTS)

    # a central schedule: fired, then frozen (skipped), then disabled
    sched = {"id": "every-second", "job_id": "ok", "when": {"cron": "* * * * * *"},
             "target": {"pcs": PCS[:1]}, "tz": "utc"}  # fmt: skip
    assert b.post("/api/schedules", sched, alice).status_code == 201

    def counted(key: str) -> bool:
        return bool(b.get("/api/schedules/every-second", alice)["status"][key] >= 2)

    await eventually(lambda: counted("fired_count"), what="central fires")
    with b.client(alice) as h:
        assert h.put("/api/freeze", json={"reason": "wipe test"}).status_code == 200
    await eventually(lambda: counted("skipped_count"), what="frozen fires")
    b.post_ok("/api/schedules/every-second/disable", None, alice)
    with b.client(alice) as h:
        assert h.delete("/api/freeze").status_code == 200

    # a rollout whose second wave waits
    waves = {"waves": [{"pcs": PCS[:2]}, {"pcs": PCS[2:], "delay": f"{delay_s}s"}]}
    created = b.post_ok("/api/exec/roll", {"target": {"pcs": PCS}, "rollout": waves}, alice)
    ids["rollout"] = str(created["rollout_id"])

    def wave0_settled() -> bool:
        r = b.get(f"/api/rollouts/{ids['rollout']}", alice)
        return bool(r["waves"][0]["state"] == "settled" and r["waves"][1]["state"] == "waiting")

    await eventually(wave0_settled, what="wave 0 settled, wave 1 waiting", timeout=40)
    await eventually(lambda: _written(b, root), what="operator state written to the broker")
    # nothing moves any more (the schedule is off, every exec ended, wave 1 waits)
    for key in ("ok", "fail", "approved", "slow"):
        await _until(b, alice, ids[key], _status(b, alice, ids[key])["status"])
    return ids


async def _rebuild(stack: Stack, b: Backend) -> Backend:
    """SIGKILL, remove the database, start a new backend on the empty file."""
    b.kill9()
    wipe(stack.db)
    return stack.backend(jwt=True)


def _tokens(b: Backend) -> dict[str, str]:
    tokens = {u: b.login(u) for u in ("alice", "bob", "root")}
    b.token = tokens["root"]  # what helpers without a token of their own use
    return tokens


def _settled_part(rows: dict[str, list[dict[str, Any]]], rid: str) -> dict[str, Any]:
    """The rows that cannot move once wave 1 is due: everything but the rollout's own exec,
    its results and the waves after the settled first one."""
    out: dict[str, Any] = {}
    for name, table in rows.items():
        if name == "rollouts":
            continue
        if name == "rollout_waves":
            out[name] = [w for w in table if w["rollout_id"] != rid or w["idx"] == 0]
        elif name in ("executions", "exec_decisions", "results"):
            out[name] = [r for r in table if r.get("exec_id") != rid]
        else:
            out[name] = table
    return out


async def _wipe_and_compare(stack: Stack, b: Backend, before: dict[str, Any], rid: str,
                            due: datetime) -> Backend:  # fmt: skip
    fresh = await _rebuild(stack, b)
    # the users are back (with their password hashes): they log in
    tokens = await eventually(lambda: _tokens(fresh), what="users back", timeout=30)

    def same() -> bool:
        if datetime.now(UTC) < due:  # nothing can have moved yet: every row, exactly
            return not differences(before, dump(stack.db))
        # A loaded machine took longer than the wave's delay: wave 1 may be under way by
        # now (what follows checks it goes out once); every other row, exactly.
        return not differences(_settled_part(before, rid), _settled_part(dump(stack.db), rid))

    try:
        await eventually(same, what="every row of interest equal to before", timeout=30)
    except BaseException:
        pytest.fail("\n".join(differences(before, dump(stack.db))))
    rollout = fresh.get(f"/api/rollouts/{rid}", tokens["alice"])
    assert rollout["waves"][0]["state"] == "settled"  # never sent again
    assert rollout["status"] in ("running", "completed")
    return fresh


async def _run(stack: Stack, wipes: int) -> None:
    for name, role in (("alice", "operator"), ("bob", "operator"), ("root", "admin")):
        stack.add_user(name, role)
    t0 = time.monotonic()
    b = stack.backend(jwt=True)
    delay_s = wave_delay_s(wipes, time.monotonic() - t0)
    tokens = _tokens(b)
    stack.swarm(N_AGENTS, prefix="w-", exec_mode="real")
    await eventually(lambda: alive(b, N_AGENTS, "w-"), what="agents alive")
    nc = await nats.connect(stack.broker.url, **stack.nats_options())
    log = await CommandLog(nc).start()
    try:
        ids = await _operator_day(stack, b, tokens, delay_s)
        rid = ids["rollout"]
        due = datetime.fromisoformat(
            b.get(f"/api/rollouts/{rid}", tokens["alice"])["waves"][1]["due_at"]
        )
        before = dump(stack.db)
        statuses = {k: _status(b, tokens["alice"], v)["status"] for k, v in ids.items()}
        assert statuses == {"ok": "completed", "fail": "completed", "slow": "cancelled",
                            "waiting": "awaiting_approval", "approved": "completed",
                            "rollout": "running"}  # fmt: skip
        t0 = time.monotonic()
        for _ in range(wipes):
            b = await _wipe_and_compare(stack, b, before, rid, due)
        rebuilt_s = (time.monotonic() - t0) / wipes

        # The rollout continues where it was: wave 1 once, wave 0 never again.
        alice = _tokens(b)["alice"]

        def completed() -> bool:
            return bool(b.get(f"/api/rollouts/{rid}", alice)["status"] == "completed")

        await eventually(completed, what="rollout completed after the wipe",
                         timeout=delay_s + 40)  # fmt: skip
        results = b.get("/api/results", alice, exec_id=rid, limit=100)["items"]
        per_pc = await log.caught_up(rid, PCS)
        report = {
            "fault": "db_wipe",
            "wipes": wipes,
            "rebuild_s": round(rebuilt_s, 2),
            "sent": len(PCS),
            "executed": len({r["pc_id"] for r in results if r["state"] == "finished"}),
            "duplicated": sum(n - 1 for n in per_pc.values()) + len(results) - len(
                {r["pc_id"] for r in results}),
            "lost": len(set(PCS) - {r["pc_id"] for r in results}),
        }  # fmt: skip
        print(json.dumps(report))
        assert report["executed"] == len(PCS) and report["duplicated"] == 0, report
        assert report["lost"] == 0, report
        assert per_pc == Counter(dict.fromkeys(PCS, 1))
        for key, status in statuses.items():
            want = "completed" if key == "rollout" else status
            assert _status(b, alice, ids[key])["status"] == want, key
    finally:
        await log.close()
        await nc.close()


async def test_a_wiped_database_comes_back_whole(stack: Stack) -> None:
    await _run(stack, wipes=1)


@pytest.mark.slow
async def test_three_wipes_in_a_row_rebuild_the_same_rows(stack: Stack) -> None:
    await _run(stack, wipes=3)

