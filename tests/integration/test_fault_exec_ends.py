"""SPEC §10.3 / §4.3, issue #14 item 2 as an operator's bad day goes, with the backend's real
defaults (reaper every 10 s, a 2 min grace past an exec's deadline) and four real agents:

1. ``local-4`` is stopped with SIGTERM. ``kanade run --all`` right after expects the three
   others and ends at once (on the old code it waited for local-4, printing nothing);
2. ``local-3`` crashes (SIGKILL: no goodbye, still "alive" for 2 min). ``kanade run --all``,
   its output a pipe, prints each result as it arrives, names local-3 at its deadline and
   exits 1;
3. meanwhile: an exec superseded in local-4's queue, a rollout halted before its second
   wave, a rejected exec, and the run of step 2 — every one of them ends by itself: its
   unstarted pcs become ``no_result`` with the reason, no state stays open.

Prints the §10.3 line: commands sent (one per expected pc of each exec), executed, duplicated, lost
(an expected pc with neither a result nor a no_result row) — the last two 0.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from agent_harness import AgentFleet, eventually
from cli_runs import Streamed, ended, exec_id_of, kanade
from rollout_stack import Backend, Stack, alive, job

# The 2 min grace of the defaults is waited out once, for every exec at the same time.
# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = [pytest.mark.stores, pytest.mark.slow, pytest.mark.timeout(480)]

PCS = ["local-1", "local-2", "local-3", "local-4"]


def ended_check(b: Backend, exec_id: str, status: str) -> Callable[[], object]:
    return lambda: ended(b, exec_id, status)


def rows_of(b: Backend, exec_id: str) -> list[dict[str, Any]]:
    return list(b.get(f"/api/executions/{exec_id}")["results"])


async def test_stopped_crashed_superseded_halted_and_rejected_execs_all_end(
    stack: Stack, fleet: AgentFleet
) -> None:
    b = stack.backend()  # the defaults: no test knobs
    for pc in PCS:
        fleet.add(pc, heartbeat_interval=1.0)
    await eventually(lambda: alive(b, 4, "local-"), timeout=60, what="4 agents alive")
    script = 'if [ "$KANADE_TEST_PC" = local-1 ]; then exit 3; fi; echo ok'
    assert b.post("/api/jobs", job("flaky", script)).status_code == 201
    assert b.post("/api/jobs", job("patch", "echo patched")).status_code == 201
    assert b.post("/api/jobs", job("gated", "echo x", require_approval=True)).status_code == 201
    execs: list[str] = []

    # 1. a clean stop, then `kanade run --all`
    await fleet["local-4"].stop()
    t0 = time.monotonic()
    run = kanade(b.url, "run", "--all", "--json", "--", "echo hi", timeout=60)
    took_clean = time.monotonic() - t0
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(json.loads(x)["pc_id"] for x in run.stdout.splitlines()) == PCS[:3]
    assert took_clean < 15, took_clean
    agents = {a["pc_id"]: a["status"] for a in b.get("/api/agents", limit=10)["items"]}
    assert agents["local-4"] == "offline"
    execs.append(b.get("/api/executions", limit=1)["items"][0]["exec_id"])

    # 3. (started now so their deadlines run alongside step 2)
    target = {"target": {"pcs": ["local-4"]}}
    old = b.post_ok("/api/exec/patch", {**target, "starting_deadline": "10s"})
    new = b.post_ok("/api/exec/patch", {**target, "starting_deadline": "10m"})
    waves = {
        "waves": [{"pcs": ["local-1"]}, {"percent": 100, "delay": "0s"}],
        "halt_on_failure_rate": 0.0,
    }
    halted = b.post_ok(
        "/api/exec/flaky",
        {"target": {"pcs": PCS[:3]}, "rollout": waves, "starting_deadline": "10s"},
    )
    gated = b.post_ok("/api/exec/gated", {"target": {"all": True}})
    assert kanade(b.url, "reject", gated["exec_id"]).returncode == 0
    execs += [old["exec_id"], new["exec_id"], halted["exec_id"], gated["exec_id"]]

    # 2. a crash, then `kanade run --all` with a short script timeout (deadline 5+10+30 s)
    await fleet["local-3"].kill9()
    before = {e["exec_id"] for e in b.get("/api/executions", limit=100)["items"]}
    cli = Streamed(
        b.url, "run", "--all", "--timeout", "5s", "--starting-deadline", "10s", "--",
        "echo from $KANADE_TEST_PC",
    )  # fmt: skip
    try:
        t0 = time.monotonic()
        while "from local-2" not in cli.out and time.monotonic() - t0 < 30:
            cli.read()
        first_result_s = time.monotonic() - t0
        assert "from local-2" in cli.out and cli.proc.poll() is None, (cli.out, cli.err)
        code = cli.wait(timeout=90)
        run_s = time.monotonic() - t0
    finally:
        cli.close()
    assert code == 1 and 40 <= run_s < 60, (code, run_s)
    assert "still waiting for 1 of 3 pc(s): local-3" in cli.err, cli.err
    crashed = exec_id_of(b, before)
    assert crashed is not None
    execs.append(crashed)

    # local-4 comes back: it runs only the newest patch (the old one was replaced)
    fleet["local-4"].start()

    # Every exec ends by itself (deadline + the 2 min grace, reaper every 10 s).
    want = {old["exec_id"]: "completed", new["exec_id"]: "completed",
            halted["exec_id"]: "completed", gated["exec_id"]: "rejected",
            crashed: "completed", execs[0]: "completed"}  # fmt: skip
    for exec_id, status in want.items():
        await eventually(
            ended_check(b, exec_id, status), timeout=240, interval=1.0,
            what=f"exec {exec_id} {status}",
        )  # fmt: skip
    notes = {
        e: {r["pc_id"]: r.get("note") or "" for r in rows_of(b, e) if r["state"] == "no_result"}
        for e in execs
    }
    assert f"(exec {new['exec_id']}) replaced it in the queue" in notes[old["exec_id"]]["local-4"]
    assert set(notes[halted["exec_id"]]) == {"local-2", "local-3"}
    assert set(notes[gated["exec_id"]]) == set(PCS[:3])  # local-4 was offline: not expected
    assert set(notes[crashed]) == {"local-3"}
    listed = b.get("/api/executions", limit=100)["items"]
    still_open = [e["exec_id"] for e in listed if e["status"] in ("pending", "running")]
    assert still_open == [], still_open

    sent = executed = closed = 0
    duplicated = 0
    for e in execs:
        ex = b.get(f"/api/executions/{e}")
        rows = [r for r in ex["results"] if r["pc_id"] in ex["expected_pcs"]]
        per_pc = Counter(r["pc_id"] for r in rows)
        duplicated += sum(n - 1 for n in per_pc.values())
        sent += ex["expected_count"]
        executed += sum(1 for r in rows if r["state"] == "finished")
        closed += sum(1 for r in rows if r["state"] == "no_result")
    report = {
        "fault": "agent_sigterm_and_sigkill_superseded_halted_rejected",
        "sent": sent,
        "executed": executed,
        "no_result": closed,
        "duplicated": duplicated,
        "lost": sent - executed - closed,
        "clean_stop_run_s": round(took_clean, 2),
        "crash_run_first_result_s": round(first_result_s, 2),
        "crash_run_s": round(run_s, 2),
    }
    print(json.dumps(report))
    assert report["duplicated"] == 0 and report["lost"] == 0, report
