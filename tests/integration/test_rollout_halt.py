"""Halting on a failure rate, resume and abort (SPEC §4.7), with real agent processes.

Twelve agents; the script fails on three of the first ten (picked by ``$KANADE_TEST_PC``).
A rollout whose first wave is those ten, with ``halt_on_failure_rate: 0.2``, halts after
it (3/10 = 30 % > 20 %) and never sends the next wave by itself. ``kanade rollout abort``
ends one such rollout (the rest is never sent, the exec is cancelled);
``kanade rollout resume`` continues another to completion.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter

import nats
import pytest
from agent_harness import AgentFleet, eventually
from rollout_stack import BIN, CommandLog, Stack, alive, job

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

FIRST = [f"pc-{i}" for i in range(10)]
REST = ["pc-10", "pc-11"]
SCRIPT = 'case "$KANADE_TEST_PC" in pc-1|pc-4|pc-7) echo boom >&2; exit 3;; esac; echo ok'
ROLLOUT = {
    "waves": [{"pcs": FIRST}, {"percent": 100, "delay": "0s"}],
    "halt_on_failure_rate": 0.2,
}


def kanade(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kanade"), *args, "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KANADE_TOKEN": ""},
    )


async def test_halt_then_abort_and_halt_then_resume(stack: Stack, fleet: AgentFleet) -> None:
    b = stack.backend()
    for pc in FIRST + REST:
        fleet.add(pc, heartbeat_interval=1.0)
    await eventually(lambda: alive(b, 12, "pc-"), timeout=40, what="12 agents alive")
    assert b.post("/api/jobs", job("flaky", SCRIPT)).status_code == 201
    nc = await nats.connect(stack.broker.url, **stack.nats_options())
    log = await CommandLog(nc).start()
    try:

        def halted(rid: str) -> dict | None:
            r = b.get(f"/api/rollouts/{rid}")
            return r if r["status"] == "halted" else None

        # --- halt, then abort --------------------------------------------------------------
        aborted = b.post_ok("/api/exec/flaky", {"target": {"all": True}, "rollout": ROLLOUT})
        a_id = aborted["rollout_id"]
        r = await eventually(lambda: halted(a_id), what="first rollout halted")
        w0, w1 = r["waves"]
        assert (w0["succeeded"], w0["failed"], w0["missing"]) == (7, 3, 0)
        assert w0["verdict"] == "exceeded" and w0["failure_rate"] == pytest.approx(0.3)
        assert w1["state"] == "waiting" and w1["pcs"] == REST
        assert "exceeds halt_on_failure_rate 0.2" in r["reason"]
        out = kanade(b.url, "rollout", "abort", a_id, "--reason", "bad patch")
        assert out.returncode == 0, out.stderr
        r = b.get(f"/api/rollouts/{a_id}")
        assert r["status"] == "aborted" and r["reason"] == "bad patch"
        assert r["waves"][1]["state"] == "cancelled"
        assert b.get(f"/api/executions/{a_id}", results="false")["status"] == "cancelled"
        again = kanade(b.url, "rollout", "resume", a_id)
        assert again.returncode != 0 and "aborted" in again.stderr

        # --- halt, then resume -------------------------------------------------------------
        resumed = b.post_ok("/api/exec/flaky", {"target": {"all": True}, "rollout": ROLLOUT})
        r_id = resumed["rollout_id"]
        await eventually(lambda: halted(r_id), what="second rollout halted")
        assert b.get(f"/api/executions/{r_id}", results="false")["status"] == "running"
        out = kanade(b.url, "rollout", "resume", r_id)
        assert out.returncode == 0, out.stderr

        def completed() -> dict | None:
            r = b.get(f"/api/rollouts/{r_id}")
            return r if r["status"] == "completed" else None

        r = await eventually(completed, what="resumed rollout completed")
        assert [w["state"] for w in r["waves"]] == ["settled", "settled"]
        assert r["waves"][1]["succeeded"] == 2

        def exec_done() -> bool:
            return b.get(f"/api/executions/{r_id}", results="false")["status"] == "completed"

        await eventually(exec_done, what="resumed exec completed")

        # The aborted rollout never sent its second wave (many runner ticks later).
        a_pcs = Counter(s.rsplit(".", 2)[-2] for s, _ in log.for_exec(a_id))
        assert a_pcs == Counter(FIRST)

        def resumed_commands() -> Counter[str]:
            return Counter(s.rsplit(".", 2)[-2] for s, _ in log.for_exec(r_id))

        # The command log is a consumer of its own and may lag the API: wait for it, then
        # check that every pc got the command exactly once.
        await eventually(
            lambda: sum(resumed_commands().values()) >= len(FIRST + REST),
            what="command log caught up",
        )
        assert resumed_commands() == Counter(FIRST + REST)
        a_results = b.get("/api/results", exec_id=a_id, limit=100)["items"]
        ran = [x["pc_id"] for x in a_results if x["state"] != "no_result"]
        assert sorted(ran) == sorted(FIRST)
        # the pcs of the wave never sent are closed at once (SPEC §4.3, every exec ends)
        closed = [x["pc_id"] for x in a_results if x["state"] == "no_result"]
        assert sorted(closed) == sorted(REST)

        audit = b.get("/api/audit", limit=1000)["items"]
        actions = Counter(a["action"] for a in audit)
        assert actions["rollout.halt"] == 2
        assert actions["rollout.abort"] == 1 and actions["rollout.resume"] == 1
    finally:
        await log.close()
        await nc.close()
