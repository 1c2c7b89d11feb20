"""SPEC §9, §10.3 on the scale-out topology: a 3-node broker cluster, PostgreSQL and two
``kanade-backend`` replicas as real processes, simulated agents in this process (the
swarm: real intake/ledger/outbox code, stub script step) on every node's URL.

* the replica leading the central scheduler is killed (-9) once it has prepared a cron
  fire (~2 s before the instant): the other takes the lease over and fires the
  occurrence, once;
* PostgreSQL is killed and restarted during a 20 000-result ingest: every result becomes
  one row;
* the replica running the rollout runner is killed while a wave is going out: the other
  takes the deciders over and finishes the rollout, every pc running once.

Each prints its SPEC §10.3 JSON line (commands sent, executed, duplicated, results lost;
the last two must be 0). Smoke versions of the three (10 agents, 2 000 results) run in
``make test`` on the module's one stack; the full sizes (40 agents, 20 000 results) are
``make test-all``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster_stack import ClusterStack, Replica, cluster_stack
from kanade.agent.swarm import Swarm, SwarmSpec
from kanade.bus.connection import Bus
from kanade.bus.publish import Outgoing, send_pipelined, settle
from kanade.core import subjects
from kanade.core.ids import new_id, result_id_for
from kanade.core.instants import system_clock
from kanade.core.models.wire import EventStarted, Result, encode
from kanade.core.msgids import result_msg_id, started_msg_id
from kanade.pgserver import EmbeddedPostgres
from kanade.security.authority import Authority
from polling import eventually
from secured import connect_backend, swarm_credentials

STUB = {"id": "stub", "version": "1",
        "execute": {"shell": "sh", "script": "true", "timeout": "30s"}}  # fmt: skip


# PostgreSQL only: replicas share one database, which SQLite (one writer process) is not
# built for (docs/store.md).
@pytest.fixture(scope="module")
def postgres() -> Iterator[EmbeddedPostgres]:
    """A throwaway server (no fsync: only a machine crash could lose what it wrote) that
    keeps every commit it acknowledged through the kill -9 of the ingest test, as a real
    one does: synchronous commit on. Off (``durable=False`` alone), a commit returns
    before its WAL leaves the server's memory, so the kill loses the last ~0.6 s of
    commits — results a projector had already acked (seen: 136 of 2 000 lost)."""
    server = EmbeddedPostgres(durable=False, settings={"synchronous_commit": "on"}).start()
    try:
        assert server.execute("SHOW synchronous_commit") == [("on",)]
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, authority: Authority, postgres: EmbeddedPostgres
) -> Iterator[ClusterStack]:
    url = postgres.create_database("faults")
    with cluster_stack(tmp_path_factory.mktemp("faults"), authority, url) as s:
        s.replica()
        s.replica()
        assert s.replicas[0].post("/api/jobs", STUB).status_code == 201
        yield s


SWARM_SIZES = [pytest.param(10, id="smoke"),
               pytest.param(40, id="40", marks=pytest.mark.slow)]  # fmt: skip
"""Simulated agents a scheduler or rollout fault test targets (``swarm`` is parametrised
indirectly with these)."""


@pytest.fixture
async def swarm(
    stack: ClusterStack, authority: Authority, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Swarm]:
    sw = Swarm(SwarmSpec(
        agents=int(request.param), nats_urls=stack.brokers.urls, data_dir=tmp_path / "swarm",
        credentials=swarm_credentials(authority, tmp_path / "swarm-trust"),
        per_connection=10, heartbeat_interval=2.0, prefix=f"f{new_id()[:6]}-",
        pull_idle_heartbeat=5.0,
    ))  # fmt: skip
    ready = asyncio.Event()
    task = asyncio.ensure_future(sw.run(on_ready=lambda _: ready.set()))
    try:
        await asyncio.wait_for(ready.wait(), 120)
        yield sw
    finally:
        sw.stop()
        await asyncio.wait_for(task, 60)


async def aget(r: Replica, path: str, **params: Any) -> Any:
    async with httpx.AsyncClient(base_url=r.url, timeout=10) as h:
        resp = await h.get(path, params=params)
        resp.raise_for_status()
        return resp.json()


async def apost(r: Replica, path: str, body: Any) -> Any:
    async with httpx.AsyncClient(base_url=r.url, timeout=30) as h:
        resp = await h.post(path, json=body)
        assert resp.status_code < 300, resp.text
        return resp.json()


def projection_report(stack: ClusterStack, exec_id: str | None = None) -> str:
    """For a failure message: each live replica's projected and refused counts, what it
    leads, and (``exec_id``) how many of the exec's results it serves."""
    out = []
    for r in stack.replicas:
        if not r.alive():
            out.append(f"{r.name}: down")
            continue
        try:
            counts = [ln for ln in r.get_text("/metrics").splitlines()
                      if ln.startswith(("kanade_projected_messages_total",
                                        "kanade_dropped_messages_total")) and " 0.0" not in ln]
            rows = r.get("/api/results", exec_id=exec_id, limit=1)["total"] if exec_id else "-"
            out.append(f"{r.name}: leads {r.leads()}, rows {rows}, {counts}")
        except httpx.HTTPError as exc:
            out.append(f"{r.name}: {exc!r}")
    return "\n".join(out)


async def live(stack: ClusterStack) -> Replica:
    return next(r for r in stack.replicas if r.alive())


async def agents_alive(stack: ClusterStack, sw: Swarm) -> None:
    prefix, n = sw.spec.prefix, sw.spec.agents

    async def all_alive() -> bool:
        items = (await aget(await live(stack), "/api/agents", status="alive", limit=1000))["items"]
        return sum(1 for a in items if a["pc_id"].startswith(prefix)) == n

    await eventually(all_alive, f"{n} agents alive", timeout=60, tolerate=(httpx.HTTPError,))


def runs_of(sw: Swarm, request_id: str) -> dict[str, int]:
    """How often each of the swarm's pcs ran the command ``request_id``."""
    wanted = {result_id_for(request_id, a.pc_id) for a in sw.agents}
    return {rid: n for rid, n in sw.executions.items() if rid in wanted}


def report(
    name: str, sent: int, runs: dict[str, int], results: int, **extra: Any
) -> dict[str, Any]:
    line = {"name": name, **extra, "sent": sent, "executed": len(runs),
            "duplicated": sum(n - 1 for n in runs.values()), "lost": sent - results}  # fmt: skip
    print(json.dumps(line))
    return line


def cron_at(moment: datetime) -> str:
    t = moment.astimezone(UTC)
    return f"{t.second} {t.minute} {t.hour} {t.day} {t.month} *"


FIRE_IN_S = 6
"""How far ahead the cron occurrence is set: room for the schedule to reach the leader
and be prepared (``PREPARE_AHEAD``, 2 s before the instant) with a margin under load."""
SETTLE_S = 5
"""How long after the instant a second fire of the occurrence, were there one, has had to
show (the standby takes over within ``lease_ttl`` + a renew interval, 2.5 s)."""


@pytest.mark.parametrize("swarm", SWARM_SIZES, indirect=True)
async def test_the_leading_replica_killed_before_a_fire_the_other_fires_it_once(
    stack: ClusterStack, swarm: Swarm
) -> None:
    n = swarm.spec.agents
    await asyncio.to_thread(stack.all_healthy)
    await agents_alive(stack, swarm)
    leader = await asyncio.to_thread(stack.leader, "scheduler")
    at = (datetime.now(UTC) + timedelta(seconds=FIRE_IN_S)).replace(microsecond=0)
    sid = f"fire-{new_id()[:8]}"
    await apost(leader, "/api/schedules", {
        "id": sid, "job_id": "stub", "when": {"cron": cron_at(at)},
        "target": {"groups": [], "pcs": [a.pc_id for a in swarm.agents]}, "tz": "utc",
    })  # fmt: skip

    async def claimed() -> bool:
        items = (await aget(leader, "/api/executions", limit=100))["items"]
        return any(e["schedule_id"] == sid for e in items)

    # The leader prepares the fire ahead of its instant (commands built, exec row claimed)
    # and would publish it at the instant: it dies in between — measured from the claim,
    # not from the clock, so a slow preparation under load cannot turn this into a kill
    # after the fire.
    await eventually(claimed, "the leader prepared the fire (its exec row claimed)",
                     timeout=FIRE_IN_S + 10)  # fmt: skip
    leader.kill()
    killed_before_s = round((at - datetime.now(UTC)).total_seconds(), 2)
    try:
        other = await live(stack)

        async def fired() -> dict[str, Any] | None:
            items = (await aget(other, "/api/executions", limit=100))["items"]
            mine = [e for e in items if e["schedule_id"] == sid]
            return mine[0] if len(mine) == 1 and mine[0]["status"] == "completed" else None

        done = await eventually(fired, "the standby fired the occurrence", timeout=60,
                                tolerate=(httpx.HTTPError,),
                                diagnostics=lambda: projection_report(stack))  # fmt: skip
        await eventually(lambda: datetime.now(UTC) >= at + timedelta(seconds=SETTLE_S),
                         "settle", timeout=30)  # fmt: skip
        execs = [e for e in (await aget(other, "/api/executions", limit=100))["items"]
                 if e["schedule_id"] == sid]  # fmt: skip
        results = (await aget(other, "/api/results", exec_id=done["exec_id"], limit=1000))
        runs = runs_of(swarm, done["request_id"])
        line = report("fault.leader_replica_kill9_before_fire", n, runs, results["total"],
                      execs=len(execs), nominal=at.isoformat(), killed_before_s=killed_before_s,
                      fired_by=(await aget(other, "/health"))["replica"])  # fmt: skip
        assert killed_before_s > 0, f"the leader was killed after the instant: {line}"
        assert len(execs) == 1, execs
        assert line["executed"] == n and line["duplicated"] == 0 and line["lost"] == 0
    finally:
        stack.restart(leader, wait=False)  # the next test waits for it (all_healthy)


async def _publish_results(bus: Bus, exec_id: str, request_id: str, n: int) -> None:
    now = system_clock()
    batch: list[Outgoing] = []
    for i in range(n):
        pc = f"ingest-{i}"
        rid = result_id_for(request_id, pc)
        started = EventStarted(
            result_id=rid, request_id=request_id, exec_id=exec_id, pc_id=pc, job_id="stub",
            version="1", started_at=now, timeout_s=60,
        )  # fmt: skip
        result = Result(result_id=rid, request_id=request_id, exec_id=exec_id, pc_id=pc,
                        job_id="stub", version="1", exit_code=0, stdout="ok\n",
                        stdout_bytes=3, started_at=now,
                        finished_at=now + timedelta(milliseconds=5))  # fmt: skip
        msg_id = started_msg_id(rid)
        batch.append(Outgoing(subjects.started_subject(pc), encode(started), msg_id))
        batch.append(Outgoing(subjects.result_subject(pc), encode(result), result_msg_id(rid)))
        if len(batch) >= 2000 or i == n - 1:
            pending = batch
            while pending:  # a publish the broker did not ack is sent again (msg ids)
                errors = await settle(await send_pipelined(bus, pending), timeout=15)
                pending = [m for m, e in zip(pending, errors, strict=True) if e is not None]
            batch = []


INGEST_SIZES = [pytest.param(2000, id="smoke"),
                pytest.param(20000, id="20000", marks=pytest.mark.slow)]  # fmt: skip


@pytest.mark.parametrize("n", INGEST_SIZES)
async def test_postgresql_restarted_during_an_ingest_loses_and_duplicates_nothing(
    stack: ClusterStack, postgres: EmbeddedPostgres, authority: Authority, n: int
) -> None:
    await asyncio.to_thread(stack.all_healthy)
    bus = await connect_backend(stack.brokers.urls, authority)
    exec_id, request_id = new_id(), new_id()
    replica = stack.replicas[0]
    try:
        publishing = asyncio.ensure_future(_publish_results(bus, exec_id, request_id, n))

        async def rows() -> int:
            return int((await aget(replica, "/api/results", exec_id=exec_id, limit=1))["total"])

        await eventually(lambda: rows_at_least(rows, n // 5), "a fifth of the results in",
                         timeout=120, tolerate=(httpx.HTTPError,))  # fmt: skip
        at_crash = await rows()
        await asyncio.to_thread(postgres.kill)
        down = time.monotonic()
        await eventually(lambda: time.monotonic() - down >= 2.0, "PostgreSQL down 2 s",
                         timeout=10)  # fmt: skip
        await asyncio.to_thread(postgres.start)
        await asyncio.wait_for(publishing, 300)
        await eventually(lambda: rows_at_least(rows, n), f"all {n} results in the database",
                         timeout=300, tolerate=(httpx.HTTPError,),
                         diagnostics=lambda: projection_report(stack, exec_id))  # fmt: skip
        total = await rows()
        healthy = [(await aget(r, "/health"))["db"] for r in stack.replicas]
        line = {"name": "fault.postgresql_restart_ingest", "results_before_crash": at_crash,
                "sent": n, "executed": total, "duplicated": max(0, total - n),
                "lost": n - total}  # fmt: skip
        print(json.dumps(line))
        assert total == n and healthy == [True, True], (line, healthy)
    finally:
        await bus.close()


async def rows_at_least(rows: Any, n: int) -> bool:
    return bool(await rows() >= n)


@pytest.mark.parametrize("swarm", SWARM_SIZES, indirect=True)
async def test_the_replica_running_a_rollout_killed_mid_wave_the_other_finishes_it(
    stack: ClusterStack, swarm: Swarm
) -> None:
    n = swarm.spec.agents
    await asyncio.to_thread(stack.all_healthy)
    await agents_alive(stack, swarm)
    pcs = [a.pc_id for a in swarm.agents]
    leader = await asyncio.to_thread(stack.leader, "deciders")
    created = await apost(leader, "/api/exec/stub", {
        "target": {"groups": [], "pcs": pcs},
        "rollout": {"waves": [{"percent": 10}, {"percent": 50, "delay": "2s"},
                              {"percent": 100, "delay": "2s"}]},
    })  # fmt: skip
    rid = created["rollout_id"]

    async def wave_one_out() -> str | None:
        r = await aget(leader, f"/api/rollouts/{rid}")
        state = str(r["waves"][1]["state"])
        return None if state == "waiting" else state

    # Killed once wave 1 is going out. A small wave of stub runs can be out and settled
    # between two polls of a loaded machine: then the kill lands before wave 2 instead of
    # the test waiting for a state it missed (the line says which it was).
    wave_one = await eventually(wave_one_out, "wave 1 going out", timeout=60)
    leader.kill()
    try:
        other = await live(stack)

        async def completed() -> dict[str, Any] | None:
            r = await aget(other, f"/api/rollouts/{rid}")
            return r if r["status"] == "completed" else None

        # Takeover: the deciders' lease TTL, a wave caught `dispatching` re-sent after
        # REDISPATCH_AFTER (10 s), results the dead replica had pulled redelivered after
        # the projection consumers' ack_wait (30 s).
        await eventually(completed, "the other replica finished the rollout", timeout=120,
                         tolerate=(httpx.HTTPError,),
                         diagnostics=lambda: projection_report(stack, rid))  # fmt: skip

        async def all_results() -> dict[str, Any] | None:
            detail = await aget(other, f"/api/executions/{rid}")
            return detail if detail["finished_count"] >= n else None

        detail = await eventually(all_results, "every pc's result", timeout=60)
        results = [r for r in detail["results"] if r.get("result_id")]
        # Each wave is its own command (request id): count the runs of every pc's result.
        runs = {r["result_id"]: swarm.executions[r["result_id"]] for r in results
                if swarm.executions[r["result_id"]]}  # fmt: skip
        line = report("fault.replica_kill9_mid_rollout", n, runs, len(results),
                      waves=3, wave1_at_kill=wave_one,
                      took_over=(await aget(other, "/health"))["replica"])  # fmt: skip
        assert line["executed"] == n and line["duplicated"] == 0 and line["lost"] == 0
        assert sorted(r["pc_id"] for r in results) == sorted(pcs)
    finally:
        stack.restart(leader, wait=False)  # the next test waits for it (all_healthy)
