"""Every exec ends (SPEC §4.3, issue #14 item 2), with real processes: a ``kanade-backend``
process, a real broker, real ``kanade-agent`` processes and the ``kanade`` CLI.

* an agent SIGTERM'd during ``kanade run --all``: the run ends by its deadline, exit 1,
  naming it; and the agent, stopped cleanly, is offline at once: the next ``kanade run
  --all`` expects only the others and succeeds (it was "alive" for 2 more minutes, and the
  run waited for it);
* a crashed agent (SIGKILL: it could not say goodbye, so the backend still counts it alive)
  is expected by ``kanade run --all``; the run prints the other results as they arrive (its
  output is a pipe, not a terminal), names it at its deadline and exits 1; with a starting
  deadline the exec closes it as ``no_result`` with the reason and completes;
* an exec superseded in the queue by a newer command of the same job ends at its deadline,
  naming the exec that replaced it;
* a rollout halted before reaching some pcs ends at its deadline (and cannot be resumed
  into an ended exec); an aborted one and a rejected exec close their pcs at once.

Short deadlines (``--starting-deadline``, ``--max-wait``, the backend's
``--no-result-grace 0s --reaper-interval 0.2``) keep it fast.
"""

from __future__ import annotations

import json
import time

import pytest
from agent_harness import AgentFleet, eventually
from cli_runs import Streamed, ended, exec_id_of, exec_view, kanade, status
from rollout_stack import Stack, alive, job

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

FAST = ("--no-result-grace", "0s", "--reaper-interval", "0.2")


async def test_a_stopped_or_dead_agent_never_leaves_a_run_or_an_exec_waiting(
    stack: Stack, fleet: AgentFleet
) -> None:
    b = stack.backend(*FAST)
    for pc in ("pc-a", "pc-b", "pc-c"):
        fleet.add(pc, heartbeat_interval=1.0)
    await eventually(lambda: alive(b, 3, "pc-"), timeout=40, what="3 agents alive")

    # --- stopped during a run: the run ends by its deadline, exit 1, naming it -----------
    before = {e["exec_id"] for e in b.get("/api/executions", limit=100)["items"]}
    cli = Streamed(
        b.url, "run", "--all", "--timeout", "20s", "--starting-deadline", "2s",
        "--max-wait", "6s", "--",
        'if [ "$KANADE_TEST_PC" = pc-c ]; then sleep 15; fi; echo done',
    )  # fmt: skip
    try:
        during = await eventually(lambda: exec_id_of(b, before), what="the run's exec")
        await fleet["pc-c"].stop()  # SIGTERM while its script runs (or before it got it)
        t0 = time.monotonic()
        code = cli.wait(timeout=20)
    finally:
        cli.close()
    assert code == 1
    assert time.monotonic() - t0 < 10
    assert "pc-c" in cli.out + cli.err  # named: killed by the stop, or still awaited
    assert "pc-a  exit 0" in cli.out and "pc-b  exit 0" in cli.out
    await eventually(lambda: ended(b, during), timeout=10, what="that exec ended")

    # --- a clean stop is seen at once: the next run does not expect the stopped agent ----
    # (the issue: it stayed "alive" for 2 minutes and `kanade run --all` waited for it)
    t0 = time.monotonic()
    run = kanade(b.url, "run", "--all", "--json", "--", "echo hi", timeout=25)
    assert run.returncode == 0, run.stdout + run.stderr
    assert time.monotonic() - t0 < 20
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert sorted(r["pc_id"] for r in lines) == ["pc-a", "pc-b"]  # pc-c is not expected
    assert status(b, "pc-c") == "offline"
    assert b.get("/api/agents/pc-c")["stopped_at"] is not None

    # --- a crash: still "alive" for the backend; the run names it at its deadline --------
    await fleet["pc-b"].kill9()
    assert status(b, "pc-b") == "alive"  # it could not say goodbye
    before = {e["exec_id"] for e in b.get("/api/executions", limit=100)["items"]}
    cli = Streamed(b.url, "run", "--all", "--max-wait", "4s", "--", "echo from $KANADE_TEST_PC")
    try:
        t0 = time.monotonic()
        # Off a terminal, each result is printed as it arrives: pc-a's before the deadline.
        while "from pc-a" not in cli.out and time.monotonic() - t0 < 3.5:
            cli.read()
        assert "from pc-a" in cli.out, (cli.out, cli.err)
        assert cli.proc.poll() is None  # still waiting for pc-b
        assert "waiting for 2 pc(s), at most 4s" in cli.err
        code = cli.wait(timeout=15)
        took = time.monotonic() - t0
    finally:
        cli.close()
    assert code == 1
    assert 3.5 <= took < 10, took  # at its deadline, not before, not much after
    assert "still waiting for 1 of 2 pc(s): pc-b" in cli.err, cli.err
    waited = exec_id_of(b, before)
    assert waited is not None
    # The exec goes on (pc-b may come back within its command's lifetime), and says until when.
    shown = kanade(b.url, "executions", "show", waited)
    assert "status running  1/2 finished  ends by " in shown.stdout, shown.stdout

    # With a starting deadline the exec itself ends first: pc-b never started by then, so it
    # is closed as no_result with the reason, the exec completes, and the run ends with it.
    before.add(waited)
    t0 = time.monotonic()
    run = kanade(
        b.url, "run", "--all", "--starting-deadline", "1s", "--max-wait", "20s", "--",
        "echo from $KANADE_TEST_PC",
    )  # fmt: skip
    assert run.returncode == 1
    assert time.monotonic() - t0 < 10
    assert "pc-b  no result" in run.stdout and "never started by the exec's deadline" in run.stdout
    exec_id = exec_id_of(b, before)
    assert exec_id is not None
    ex = await eventually(lambda: ended(b, exec_id), timeout=10, what="the exec ended")
    rows = {r["pc_id"]: r for r in ex["results"]}
    assert rows["pc-a"]["state"] == "finished" and rows["pc-a"]["exit_code"] == 0
    assert rows["pc-b"]["state"] == "no_result"
    assert (ex["finished_count"], ex["failed_count"], ex["expected_count"]) == (2, 1, 2)
    shown = kanade(b.url, "executions", "show", exec_id)
    assert "status completed  2/2 finished" in shown.stdout, shown.stdout
    assert "no result" in shown.stdout and "ends by" not in shown.stdout


async def test_a_superseded_exec_ends_naming_the_one_that_replaced_it(
    stack: Stack, fleet: AgentFleet
) -> None:
    b = stack.backend(*FAST)
    agent = fleet.add("pc-d", heartbeat_interval=1.0)
    await eventually(lambda: alive(b, 1, "pc-d"), timeout=40, what="pc-d alive")
    assert b.post("/api/jobs", job("patch", "echo patched")).status_code == 201
    await agent.stop()  # away: its commands wait in the stream, one per job
    target = {"target": {"pcs": ["pc-d"]}}
    old = b.post_ok("/api/exec/patch", {**target, "starting_deadline": "2s"})
    new = b.post_ok("/api/exec/patch", {**target, "starting_deadline": "60s"})
    assert old["deadline_at"] is not None and old["timeout_s"] == 30.0
    agent.start()  # back: only the newer command is still queued for it

    ex = await eventually(lambda: ended(b, new["exec_id"]), timeout=30, what="new ran")
    assert ex["results"][0]["exit_code"] == 0
    ex = await eventually(lambda: ended(b, old["exec_id"]), timeout=15, what="old ended")
    (row,) = ex["results"]
    assert row["state"] == "no_result"
    assert f"(exec {new['exec_id']}) replaced it in the queue" in row["note"], row["note"]


async def test_halted_aborted_and_rejected_execs_end(stack: Stack, fleet: AgentFleet) -> None:
    b = stack.backend(*FAST)
    for pc in ("pc-a", "pc-b", "pc-c"):
        fleet.add(pc, heartbeat_interval=1.0)
    await eventually(lambda: alive(b, 3, "pc-"), timeout=40, what="3 agents alive")
    script = 'if [ "$KANADE_TEST_PC" = pc-a ]; then exit 3; fi; echo ok'
    assert b.post("/api/jobs", job("flaky", script)).status_code == 201
    assert b.post("/api/jobs", job("gated", "echo x", require_approval=True)).status_code == 201
    waves = {
        "waves": [{"pcs": ["pc-a"]}, {"percent": 100, "delay": "0s"}],
        "halt_on_failure_rate": 0.0,
    }

    def halted(rid: str) -> bool:
        return b.get(f"/api/rollouts/{rid}")["status"] == "halted"

    # --- halted before reaching pc-b and pc-c: they end at the exec's deadline ------------
    r1 = b.post_ok(
        "/api/exec/flaky",
        {"target": {"all": True}, "rollout": waves, "starting_deadline": "2s"},
    )
    await eventually(lambda: halted(r1["rollout_id"]), timeout=20, what="rollout halted")
    ex = await eventually(lambda: ended(b, r1["exec_id"]), timeout=15, what="halted ended")
    rows = {r["pc_id"]: r for r in ex["results"]}
    assert rows["pc-a"]["exit_code"] == 3
    for pc in ("pc-b", "pc-c"):
        assert rows[pc]["state"] == "no_result"
        assert "rollout halted before its wave 1" in rows[pc]["note"]
    resumed = b.post(f"/api/rollouts/{r1['rollout_id']}/resume")
    assert resumed.status_code == 409 and "deadline" in resumed.json()["error"]

    # --- aborted: its unsent pcs end at once (its deadline is a minute away) ------------
    r2 = b.post_ok(
        "/api/exec/flaky",
        {"target": {"all": True}, "rollout": waves, "starting_deadline": "60s"},
    )
    await eventually(lambda: halted(r2["rollout_id"]), timeout=20, what="rollout halted")
    out = kanade(b.url, "rollout", "abort", r2["rollout_id"], "--reason", "bad patch")
    assert out.returncode == 0, out.stderr
    ex, rows = exec_view(b, r2["exec_id"])
    assert ex["status"] == "cancelled"
    assert {pc: r["state"] for pc, r in rows.items()} == {
        "pc-a": "finished", "pc-b": "no_result", "pc-c": "no_result",
    }  # fmt: skip
    assert "rollout was aborted before its wave 1" in rows["pc-b"]["note"]

    # --- rejected in approval: nothing was sent, every pc ends at once -------------------
    gated = b.post_ok("/api/exec/gated", {"target": {"all": True}})
    assert gated["status"] == "awaiting_approval" and gated["deadline_at"] is None
    out = kanade(b.url, "reject", gated["exec_id"], "--reason", "not today")
    assert out.returncode == 0, out.stderr
    ex, rows = exec_view(b, gated["exec_id"])
    assert ex["status"] == "rejected"
    assert sorted(rows) == ["pc-a", "pc-b", "pc-c"]
    assert all(r["state"] == "no_result" for r in rows.values())
    assert all("rejected in approval" in r["note"] for r in rows.values())
