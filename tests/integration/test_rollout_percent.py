"""A 10 % / 40 % / rest rollout over 20 simulated agents (a real ``kanade-agent swarm``,
a real ``kanade-backend`` process, the ``kanade`` CLI): 2 / 8 / 10 pcs, no pc twice, none
missed — counted from what the command stream stored and from the results."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter

import nats
import pytest
from agent_harness import eventually
from rollout_stack import BIN, CommandLog, Stack, alive, job

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores


def kanade(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kanade"), *args, "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KANADE_TOKEN": ""},
    )


async def test_ten_forty_rest_over_twenty_agents(stack: Stack) -> None:
    b = stack.backend()
    stack.swarm(20, prefix="sim-")
    await eventually(lambda: alive(b, 20, "sim-"), what="20 agents alive")
    assert b.post("/api/jobs", job("hello", "echo hi")).status_code == 201
    nc = await nats.connect(stack.broker.url, **stack.nats_options())
    log = await CommandLog(nc).start()
    try:
        cli = kanade(
            b.url, "exec", "hello", "--all", "--wave", "10%", "--wave", "40%",
            "--wave", "rest", "--wave-delay", "0s", "--json",
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr
        created = json.loads(cli.stdout)
        rid = created["rollout_id"]
        assert rid == created["exec_id"] and created["expected_count"] == 20

        def completed() -> dict | None:
            r = b.get(f"/api/rollouts/{rid}")
            return r if r["status"] == "completed" else None

        r = await eventually(completed, timeout=30, what="rollout completed")
        waves = r["waves"]
        assert [w["size"] for w in waves] == [2, 8, 10]
        assert [w["label"] for w in waves] == ["10%", "40%", "rest"]
        assert all(w["state"] == "settled" and w["verdict"] == "ok" for w in waves)
        members = [pc for w in waves for pc in w["pcs"]]
        assert len(members) == len(set(members)) == 20  # no pc twice, none missed

        # What the broker stored: exactly one command per pc, under its wave's request id.
        def all_commands() -> list | None:
            got = log.for_exec(rid)
            return got if len(got) >= 20 else None

        cmds = await eventually(all_commands, what="20 commands in the stream")
        per_pc = Counter(subject.rsplit(".", 2)[-2] for subject, _ in cmds)
        assert set(per_pc) == set(members) and set(per_pc.values()) == {1}
        wave_of = {pc: w["request_id"] for w in waves for pc in w["pcs"]}
        assert all(c.request_id == wave_of[s.rsplit(".", 2)[-2]] for s, c in cmds)

        results = b.get("/api/results", exec_id=rid, limit=1000)["items"]
        assert Counter(x["pc_id"] for x in results) == Counter(members)
        execution = b.get(f"/api/executions/{rid}", results="false")
        assert execution["status"] == "completed" and execution["finished_count"] == 20

        shown = kanade(b.url, "rollout", "show", rid)
        assert shown.returncode == 0 and "completed" in shown.stdout, shown.stderr
        listed = kanade(b.url, "rollout", "list", "--json")
        assert rid in listed.stdout
    finally:
        await log.close()
        await nc.close()
