"""Rollouts survive backend restarts (SPEC §4.7, §10.3), with real processes only.

1. A 3-wave rollout (5 s apart) to six real agents; the backend is SIGKILLed once wave 1
   settled and stays down until wave 2 is overdue; a new backend process on the same
   database sends wave 2 at once and wave 3 5 s after wave 2 settled. Each pc runs the
   script exactly once (its own file gets one line) and the command stream stored exactly
   one command per pc.
2. A crash between claiming a wave and recording it as dispatched: the wave is
   re-published from the stored bytes — the broker drops the copy inside its duplicate
   window, and beyond it the agents' admission ledgers refuse to run it again.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest
from agent_harness import AgentFleet, eventually
from rollout_stack import CommandLog, Stack, alive, job
from sqlalchemy import select, update

from kanade.backend.inprocess import in_process_backend
from kanade.backend.settings import Settings
from kanade.backend.store.tables import rollout_waves
from kanade.backend.workers.rollouts import RolloutRunner
from kanade.bus.connection import Bus
from kanade.core import subjects
from secured import authority_dir

WAVES = {
    "waves": [
        {"pcs": ["pc-0", "pc-1"]},
        {"pcs": ["pc-2", "pc-3"], "delay": "5s"},
        {"percent": 100, "delay": "5s"},
    ]
}


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def run_counts(runs: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in runs.iterdir()}


@pytest.mark.stores  # `kanade-backend run --db postgresql://…` killed and restarted
async def test_sigkill_after_wave_one_resumes_once(
    stack: Stack, fleet: AgentFleet, tmp_path: Path
) -> None:
    b = stack.backend()
    for i in range(6):
        fleet.add(f"pc-{i}", heartbeat_interval=1.0)
    await eventually(lambda: alive(b, 6, "pc-"), what="6 agents alive")
    runs = tmp_path / "runs"
    runs.mkdir()
    script = f'echo run >> "{runs}/$KANADE_TEST_PC"'
    assert b.post("/api/jobs", job("touch", script)).status_code == 201
    nc = await nats.connect(stack.broker.url, **stack.nats_options())
    log = await CommandLog(nc).start()
    try:
        created = b.post_ok("/api/exec/touch", {"target": {"all": True}, "rollout": WAVES})
        rid = created["rollout_id"]

        def wave0_settled() -> dict | None:
            r = b.get(f"/api/rollouts/{rid}")
            return r if r["waves"][0]["state"] == "settled" else None

        r = await eventually(wave0_settled, what="wave 0 settled")
        assert r["waves"][1]["state"] == "waiting"
        due1 = ts(r["waves"][1]["due_at"])
        b.kill9()
        # Down until wave 1 is overdue: the new process must send it at once.
        await eventually(
            lambda: datetime.now(UTC) > due1 + timedelta(seconds=1), what="wave 1 overdue"
        )
        restarted_at = datetime.now(UTC)
        b2 = stack.backend()
        ready_at = datetime.now(UTC)  # start-up alone takes seconds on a loaded machine

        def completed() -> dict | None:
            r = b2.get(f"/api/rollouts/{rid}")
            return r if r["status"] == "completed" else None

        r = await eventually(completed, timeout=40, what="rollout completed after restart")
        w0, w1, w2 = r["waves"]
        assert [w["pcs"] for w in r["waves"]] == [
            ["pc-0", "pc-1"],
            ["pc-2", "pc-3"],
            ["pc-4", "pc-5"],
        ]
        # Wave 1 was overdue: sent right after the restart (not 5 s later, not before).
        assert restarted_at <= ts(w1["dispatched_at"]) <= ready_at + timedelta(seconds=5)
        assert ts(w1["dispatched_at"]) - ts(w0["settled_at"]) >= timedelta(seconds=5)
        # Wave 2 at its due time: 5 s after wave 1 settled.
        gap = ts(w2["dispatched_at"]) - ts(w1["settled_at"])
        assert timedelta(seconds=5) <= gap <= timedelta(seconds=8), gap

        # Every pc ran once; the broker stored one command per pc.
        await eventually(lambda: len(run_counts(runs)) == 6, what="six pcs ran")
        assert run_counts(runs) == {f"pc-{i}": 1 for i in range(6)}
        per_pc = await log.caught_up(rid, [f"pc-{i}" for i in range(6)])
        assert per_pc == Counter({f"pc-{i}": 1 for i in range(6)})
        results = b2.get("/api/results", exec_id=rid, limit=100)["items"]
        assert sorted(x["pc_id"] for x in results) == [f"pc-{i}" for i in range(6)]
        assert all(x["exit_code"] == 0 for x in results)
        assert b2.get(f"/api/executions/{rid}", results="false")["status"] == "completed"
    finally:
        await log.close()
        await nc.close()


@pytest.mark.stores  # the dispatch marks it republishes from: SQLite and PostgreSQL
async def test_interrupted_dispatch_is_republished_but_never_runs_twice(
    stack: Stack, fleet: AgentFleet, tmp_path: Path
) -> None:
    for i in range(3):
        fleet.add(f"pc-{i}", heartbeat_interval=1.0)
    runs = tmp_path / "runs"
    runs.mkdir()
    # The app's own runner ticks once at start-up and then sleeps: the test drives a
    # runner of its own, step by step.
    settings = Settings.from_db_arg(
        authority_dir=authority_dir(),
        nats_url=stack.broker.url,
        db=stack.db,  # the stack's database: its backend processes are not started here
        rollout_interval_s=3600.0,
    )
    async with in_process_backend(settings) as backend:
        client, db = backend.client, backend.services.db

        async def all_alive() -> bool:
            items = (await client.get("/api/agents", params={"status": "alive"})).json()["items"]
            return len(items) >= 3

        await eventually(all_alive, what="3 agents alive")
        r = await client.post(
            "/api/jobs", json=job("touch", f'echo run >> "{runs}/$KANADE_TEST_PC"')
        )
        assert r.status_code == 201
        nc = await nats.connect(stack.broker.url, **stack.nats_options())
        log = await CommandLog(nc).start()
        try:
            created = (
                await client.post(
                    "/api/exec/touch",
                    json={"target": {"all": True}, "rollout": {"waves": [{"percent": 100}]}},
                )
            ).json()
            rid = created["rollout_id"]
            runner = RolloutRunner(
                db,
                backend.services.link.bus,
                clock=lambda: datetime.now(UTC),
                redispatch_after=timedelta(0),
            )
            assert await runner.tick()  # claim → publish → mark dispatched
            await eventually(lambda: len(run_counts(runs)) == 3, what="three pcs ran")

            # Crash between publish and mark: the row still says "dispatching".
            await db.write(
                lambda conn: conn.execute(
                    update(rollout_waves)
                    .where(rollout_waves.c.rollout_id == rid)
                    .values(state="dispatching", dispatched_at=None)
                )
            )
            assert await runner.tick()  # taken over: the stored bytes go out again
            wave = (await client.get(f"/api/rollouts/{rid}")).json()["waves"][0]
            assert wave["state"] == "dispatched"
            # Inside the duplicate window the broker stored nothing new.
            per_pc = Counter(s.rsplit(".", 2)[-2] for s, _ in log.for_exec(rid))
            assert per_pc == Counter({"pc-0": 1, "pc-1": 1, "pc-2": 1})

            # Beyond the window (simulated: the same bytes under a fresh msg id), the
            # agents' ledgers recognise the request id and do not run it again.
            bus: Bus = backend.services.link.bus()
            raw = await db.read(
                lambda conn: conn.execute(
                    select(rollout_waves.c.command).where(rollout_waves.c.rollout_id == rid)
                ).scalar_one()
            )
            for subject, _ in log.for_exec(rid):
                await bus.publish_js(subject, raw.encode(), msg_id=f"late:{subject}")
            await eventually(
                lambda: len(log.for_exec(rid)) == 6, what="late copies stored by the broker"
            )

            # The agents acked the copies (their consumers moved past them) ...
            async def consumed() -> bool:
                js = nc.jetstream()
                for i in range(3):
                    name = subjects.agent_consumer_name(f"pc-{i}")
                    info = await js.consumer_info(subjects.STREAM_COMMANDS, name)
                    if info.num_pending or info.num_ack_pending:
                        return False
                return True

            await eventually(consumed, what="agents consumed the late copies")
            # ... and nobody ran the script a second time (nor reported a conflict: the
            # bytes are identical, so the ledger sees a duplicate, not a reuse).
            assert run_counts(runs) == {"pc-0": 1, "pc-1": 1, "pc-2": 1}

            async def three_results() -> list | None:
                page = await client.get("/api/results", params={"exec_id": rid})
                items = page.json()["items"]
                return items if len(items) >= 3 else None

            items = await eventually(three_results, what="three results")
            assert len(items) == 3 and all(x["exit_code"] == 0 for x in items)
        finally:
            await log.close()
            await nc.close()
