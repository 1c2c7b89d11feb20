"""Projection of results, EventStarted, exec records and heartbeats into SQL, against a
real nats-server, on SQLite and on PostgreSQL. Agents are played by hand-built wire
messages."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from kanade.backend.inprocess import InProcessBackend, in_process_backend
from kanade.backend.messaging.consumers import EXECS_CONSUMER, RESULTS_CONSUMER
from kanade.backend.settings import Settings
from kanade.backend.store import agents, results
from kanade.backend.store.database import Database
from kanade.backend.store.migrate import upgrade_sync
from kanade.backend.workers.projection.results import ResultsProjector
from kanade.bus import Bus, EmbeddedBroker
from kanade.core import subjects
from kanade.core.ids import result_id_for
from kanade.core.models.wire import EventStarted, Result, encode
from pgdb import wipe_store
from polling import eventually as shared_eventually
from secured import authority_dir

DEADLINE = 15.0

HELLO = {
    "id": "hello",
    "version": "1",
    "execute": {"shell": "sh", "script": "echo hello", "timeout": "30s"},
}


eventually = functools.partial(shared_eventually, timeout=DEADLINE, interval=0.01)


pytestmark = pytest.mark.stores


def settings_for(nats_url: str, db: str | Path) -> Settings:
    return Settings.from_db_arg(
        authority_dir=authority_dir(), nats_url=nats_url, db=str(db), heartbeat_flush_s=0.05
    )


@pytest.fixture
async def backend(nats_url: str, store_url: str) -> AsyncIterator[InProcessBackend]:
    async with in_process_backend(settings_for(nats_url, store_url)) as b:
        yield b


async def new_exec(backend: InProcessBackend, pcs: list[str]) -> dict[str, Any]:
    assert (await backend.client.post("/api/jobs", json=HELLO)).status_code in (200, 201)
    # force: these pcs never report (the test plays their results)
    r = await backend.client.post("/api/exec/hello?force=true", json={"target": {"pcs": pcs}})
    assert r.status_code == 201, r.text
    detail = (await backend.client.get(f"/api/executions/{r.json()['exec_id']}")).json()
    return dict(detail)


def started(ex: dict[str, Any], pc: str) -> EventStarted:
    return EventStarted(
        result_id=result_id_for(ex["request_id"], pc),
        request_id=ex["request_id"],
        exec_id=ex["exec_id"],
        pc_id=pc,
        job_id=ex["job_id"],
        version=ex["version"],
        started_at=datetime.now(UTC),
        timeout_s=30.0,
    )


def result(ex: dict[str, Any], pc: str, exit_code: int = 0, **kw: Any) -> Result:
    now = datetime.now(UTC)
    return Result(
        result_id=result_id_for(ex["request_id"], pc),
        request_id=ex["request_id"],
        exec_id=ex["exec_id"],
        pc_id=pc,
        job_id=ex["job_id"],
        version=ex["version"],
        exit_code=exit_code,
        stdout=f"hello from {pc}\n",
        stdout_bytes=len(f"hello from {pc}\n"),
        started_at=now - timedelta(seconds=1),
        finished_at=now,
        **kw,
    )


async def send(bus: Bus, msg: Result | EventStarted, *, msg_id: str | None = None) -> int:
    """Publish as an agent would (dedup id = result_id unless told); the stream seq."""
    subject = (
        subjects.started_subject(msg.pc_id)
        if isinstance(msg, EventStarted)
        else subjects.result_subject(msg.pc_id)
    )
    if msg_id is None:
        msg_id = ("started:" if isinstance(msg, EventStarted) else "") + msg.result_id
    ack = await bus.publish_js(subject, encode(msg), msg_id=msg_id)
    return ack.seq


async def exec_detail(backend: InProcessBackend, exec_id: str) -> dict[str, Any]:
    r = await backend.client.get(f"/api/executions/{exec_id}")
    assert r.status_code == 200
    return dict(r.json())


def by_pc(detail: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["pc_id"]: e for e in detail["results"]}


def counters(detail: dict[str, Any]) -> tuple[Any, ...]:
    keys = ("status", "started_count", "finished_count", "failed_count", "skipped_count")
    return tuple(detail[k] for k in keys)


async def test_results_are_projected_and_drive_the_exec_status(
    backend: InProcessBackend, bus: Bus
) -> None:
    ex = await new_exec(backend, ["pc1", "pc2"])
    assert counters(ex) == ("pending", 0, 0, 0, 0)

    await send(bus, started(ex, "pc1"))

    async def pc1_in_flight() -> dict[str, Any] | None:
        d = await exec_detail(backend, ex["exec_id"])
        return d if by_pc(d)["pc1"]["state"] == "in_flight" else None

    d = await eventually(pc1_in_flight, what="EventStarted projected")
    assert counters(d) == ("running", 1, 0, 0, 0)
    assert by_pc(d)["pc2"]["state"] == "pending"
    assert by_pc(d)["pc1"]["timeout_s"] == 30.0

    t0 = time.monotonic()
    seq = await send(bus, result(ex, "pc1"))

    async def pc1_finished() -> dict[str, Any] | None:
        d = await exec_detail(backend, ex["exec_id"])
        return d if by_pc(d)["pc1"]["state"] == "finished" else None

    d = await eventually(pc1_finished, what="result projected")
    latency = time.monotonic() - t0
    assert latency < 1.0, f"a single result took {latency:.3f}s to reach the DB"
    row = by_pc(d)["pc1"]
    assert (row["exit_code"], row["stdout"]) == (0, "hello from pc1\n")
    assert counters(d) == ("running", 1, 1, 0, 0)

    # recorded_at is the stream's publish time, not the backend's clock.
    stored = await bus.js.get_msg(subjects.STREAM_RESULTS, seq=seq)
    assert stored.time is not None
    recorded = datetime.fromisoformat(row["recorded_at"])
    assert abs(recorded - stored.time) < timedelta(milliseconds=1)

    await send(bus, result(ex, "pc2", exit_code=3))

    async def completed() -> dict[str, Any] | None:
        d = await exec_detail(backend, ex["exec_id"])
        return d if d["status"] == "completed" else None

    d = await eventually(completed, what="exec completed")
    assert counters(d) == ("completed", 2, 2, 1, 0)

    page = (await backend.client.get(f"/api/results?exec_id={ex['exec_id']}")).json()
    assert page["total"] == 2
    assert [r["pc_id"] for r in page["items"]] == ["pc2", "pc1"]  # newest first
    only = (await backend.client.get("/api/results?pc_id=pc2")).json()["items"]
    assert [r["exit_code"] for r in only] == [3]
    one = (await backend.client.get(f"/api/results/{row['result_id']}")).json()
    assert one["pc_id"] == "pc1"
    running = (await backend.client.get("/api/executions?status=completed&job_id=hello")).json()
    assert [e["exec_id"] for e in running["items"]] == [ex["exec_id"]]


async def test_a_long_poll_answers_when_a_result_is_stored_and_not_before(
    backend: InProcessBackend, bus: Bus
) -> None:
    """``done_above`` + ``wait``: the answer comes as the result is stored (a started
    event does not count), or with the unchanged row once ``wait`` passed."""
    ex = await new_exec(backend, ["pc1", "pc2"])
    url = f"/api/executions/{ex['exec_id']}"
    t0 = time.monotonic()
    quiet = await backend.client.get(url, params={"done_above": 0, "wait": 0.3})
    assert quiet.status_code == 200 and quiet.json()["finished_count"] == 0
    assert time.monotonic() - t0 >= 0.3  # nothing happened: held for the whole wait

    waiting = asyncio.create_task(
        backend.client.get(url, params={"done_above": 0, "wait": 20, "results": "false"})
    )
    await send(bus, started(ex, "pc1"))
    await send(bus, started(ex, "pc2"))
    # The started events are projected (the pcs are in flight), the poll still waits.
    await eventually(lambda: _in_flight(backend, ex["exec_id"], 2), what="started projected")
    assert not waiting.done()
    t1 = time.monotonic()
    await send(bus, result(ex, "pc1"))
    answer = await asyncio.wait_for(waiting, timeout=10)
    assert time.monotonic() - t1 < 5, "answered by the commit, not the end of the wait"
    assert answer.json()["finished_count"] == 1 and "results" not in answer.json()

    # Already past the count (or ended): answered at once.
    t2 = time.monotonic()
    at_once = await backend.client.get(url, params={"done_above": 0, "wait": 20})
    assert at_once.json()["finished_count"] == 1 and time.monotonic() - t2 < 5
    t3 = time.monotonic()
    await send(bus, result(ex, "pc2"))
    ended = await backend.client.get(url, params={"done_above": 5, "wait": 20})
    assert ended.json()["status"] == "completed" and time.monotonic() - t3 < 10


async def _in_flight(backend: InProcessBackend, exec_id: str, n: int) -> bool:
    return (await exec_detail(backend, exec_id))["started_count"] >= n


@pytest.mark.parametrize(
    ("query", "path"),
    [("done_above=-1&wait=1", "query.done_above"), ("done_above=0&wait=31", "query.wait"),
     ("done_above=0&wait=soon", "query.wait")],
)  # fmt: skip
async def test_a_long_poll_out_of_bounds_is_a_400_naming_it(
    backend: InProcessBackend, query: str, path: str
) -> None:
    r = await backend.client.get(f"/api/executions/x1?{query}")
    assert r.status_code == 400 and path in {e["path"] for e in r.json()["errors"]}


async def test_redelivered_result_and_late_started_change_nothing(
    backend: InProcessBackend, bus: Bus
) -> None:
    ex = await new_exec(backend, ["pc1", "pc2"])
    res = result(ex, "pc1", skipped=True, exit_code=125, note="deadline passed")
    # Three stream copies of one result (an agent replaying its outbox past the
    # broker's dedup window), then its EventStarted arriving last.
    for copy in range(3):
        await send(bus, res, msg_id=f"{res.result_id}:{copy}")
    await send(bus, started(ex, "pc1"))
    # A marker result: once it is in, everything before it was processed.
    await send(bus, result(ex, "pc2"))

    async def both_in() -> dict[str, Any] | None:
        d = await exec_detail(backend, ex["exec_id"])
        return d if d["finished_count"] == 2 else None

    d = await eventually(both_in, what="results projected")
    rows = (await backend.client.get(f"/api/results?exec_id={ex['exec_id']}")).json()
    assert rows["total"] == 2
    pc1 = by_pc(d)["pc1"]
    assert (pc1["state"], pc1["skipped"], pc1["exit_code"]) == ("finished", True, 125)
    assert pc1["note"] == "deadline passed"
    assert counters(d) == ("completed", 2, 2, 0, 1)
    await no_unacked(bus)


async def no_unacked(bus: Bus) -> None:
    async def settled() -> bool:
        info = await bus.js.consumer_info(RESULTS_CONSUMER.stream, RESULTS_CONSUMER.durable)
        return bool(info.num_ack_pending == 0 and info.num_pending == 0)

    await eventually(settled, what="every results message acked")


async def test_poison_messages_are_acked_and_never_block(
    backend: InProcessBackend, bus: Bus
) -> None:
    ex = await new_exec(backend, ["pc1", "pc2", "pc3"])
    await send(bus, result(ex, "pc1"))
    await bus.publish_js(subjects.result_subject("pc9"), b"\x00not json")
    await bus.publish_js(subjects.result_subject("pc9"), b'{"result_id": "x"}')
    await bus.publish_js(subjects.started_subject("pc9"), b"[]")
    await send(bus, result(ex, "pc2"))
    await send(bus, result(ex, "pc3"))

    async def completed() -> dict[str, Any] | None:
        d = await exec_detail(backend, ex["exec_id"])
        return d if d["status"] == "completed" else None

    d = await eventually(completed, what="good results around the poison projected")
    assert counters(d) == ("completed", 3, 3, 0, 0)
    await no_unacked(bus)


async def test_a_failed_commit_leaves_the_batch_for_redelivery(
    backend: InProcessBackend, bus: Bus
) -> None:
    """The database failing must not lose a message: it stays unacked (nak'ed) and is
    projected once the database works again. The failure is real: the results table
    is renamed away, so SQLite raises OperationalError ("no such table")."""
    db = backend.services.db
    ex = await new_exec(backend, ["pc1"])
    await db.write(lambda conn: conn.execute(text("ALTER TABLE results RENAME TO results_away")))
    await send(bus, result(ex, "pc1"))

    async def redelivered() -> bool:
        info = await bus.js.consumer_info(RESULTS_CONSUMER.stream, RESULTS_CONSUMER.durable)
        return bool(info.num_redelivered > 0)

    await eventually(redelivered, what="the result is redelivered, not acked")
    await db.write(lambda conn: conn.execute(text("ALTER TABLE results_away RENAME TO results")))

    async def projected() -> bool:
        d = await exec_detail(backend, ex["exec_id"])
        return bool(d["status"] == "completed")

    await eventually(projected, what="projected after the DB recovered")
    await no_unacked(bus)


async def test_a_row_the_db_refuses_is_skipped_without_losing_its_batch(
    backend: InProcessBackend, bus: Bus
) -> None:
    """A message with a value no row can hold (an exit code beyond SQLite's 64-bit
    integers) is poison: refused at decode now (kanade.core.bounds), and a row the
    database still refused would be isolated the same way. Its batch-mates are still
    projected, and nothing stays unacked."""
    ex = await new_exec(backend, ["pc1", "pc2", "pc3"])
    await send(bus, result(ex, "pc1"))
    bad = json.loads(encode(result(ex, "pc2")))
    bad["exit_code"] = 2**70
    await bus.publish_js(subjects.result_subject("pc2"), json.dumps(bad).encode(),
                         msg_id=bad["result_id"])
    await send(bus, result(ex, "pc3"))

    async def good_ones_in() -> dict[str, Any] | None:
        d = await exec_detail(backend, ex["exec_id"])
        return d if d["finished_count"] == 2 else None

    d = await eventually(good_ones_in, what="the storable results projected")
    assert by_pc(d)["pc2"]["state"] == "pending"
    await no_unacked(bus)


async def test_result_of_an_exec_the_db_never_saw_is_kept(
    backend: InProcessBackend, bus: Bus
) -> None:
    ghost = {"request_id": "r" * 32, "exec_id": "e" * 32, "job_id": "hello", "version": "1"}
    await send(bus, result(ghost, "pc1"))

    async def stored() -> list[dict[str, Any]]:
        page = (await backend.client.get(f"/api/results?exec_id={'e' * 32}")).json()
        return list(page["items"])

    (row,) = await eventually(stored, what="orphan result stored")
    assert row["state"] == "finished"


async def test_expected_pcs_are_the_alive_agents_only(backend: InProcessBackend, bus: Bus) -> None:
    now = datetime.now(UTC)

    def agent(pc: str, age: timedelta) -> dict[str, Any]:
        return {
            "pc_id": pc, "hostname": pc, "agent_version": "0.1.0", "os_family": "linux",
            "os_version": "", "boot_time": None, "cpu_percent": 0.0, "rss_bytes": 0,
            "groups": ["web"], "schedule_set_version": None, "last_command_at": None,
            "queue_length": 0, "running": 0, "last_seen": now - age, "first_seen": now - age,
        }  # fmt: skip

    rows = [
        agent("fresh", timedelta(seconds=10)),
        agent("stale", timedelta(minutes=5)),
        agent("gone", timedelta(hours=2)),
    ]
    await backend.services.db.write(lambda conn: agents.upsert_agents(conn, rows))
    listed = (await backend.client.get("/api/agents")).json()["items"]
    assert {a["pc_id"]: a["status"] for a in listed} == {
        "fresh": "alive",
        "stale": "stale",
        "gone": "offline",
    }
    await backend.client.post("/api/jobs", json=HELLO)
    r = await backend.client.post("/api/exec/hello", json={"target": {"groups": ["web"]}})
    assert r.json()["expected_pcs"] == ["fresh"]


async def test_wiped_db_is_rebuilt_from_the_streams(
    nats_url: str, bus: Bus, store_url: str
) -> None:
    async with in_process_backend(settings_for(nats_url, store_url)) as first:
        ex = await new_exec(first, ["pc1", "pc2"])
        await send(bus, started(ex, "pc1"))
        await send(bus, result(ex, "pc1", exit_code=1))
        await send(bus, started(ex, "pc2"))

        async def projected() -> dict[str, Any] | None:
            d = await exec_detail(first, ex["exec_id"])
            return d if d["started_count"] == 2 and d["finished_count"] == 1 else None

        before = await eventually(projected, what="first projection")
        before_results = (await first.client.get("/api/results")).json()["items"]

    await asyncio.to_thread(wipe_store, store_url)

    async with in_process_backend(settings_for(nats_url, store_url)) as second:

        async def rebuilt() -> dict[str, Any] | None:
            r = await second.client.get(f"/api/executions/{ex['exec_id']}")
            if r.status_code != 200:
                return None
            d = dict(r.json())
            return d if d["started_count"] == 2 and d["finished_count"] == 1 else None

        after = await eventually(rebuilt, what="re-projection after the wipe")
        after_results = (await second.client.get("/api/results")).json()["items"]

    volatile = {"updated_at"}
    assert {k: v for k, v in after.items() if k not in volatile} == {
        k: v for k, v in before.items() if k not in volatile
    }
    assert after_results == before_results  # same rows, same recorded_at
    info = await bus.js.consumer_info(EXECS_CONSUMER.stream, EXECS_CONSUMER.durable)
    assert info.num_ack_pending == 0


async def test_projection_resumes_after_a_broker_restart(
    backend: InProcessBackend, bus: Bus, nats_server: EmbeddedBroker
) -> None:
    ex = await new_exec(backend, ["pc1", "pc2"])
    await send(bus, result(ex, "pc1"))

    async def first_in() -> bool:
        return bool((await exec_detail(backend, ex["exec_id"]))["finished_count"] == 1)

    await eventually(first_in, what="first result projected")
    await asyncio.to_thread(nats_server.restart)

    async def published() -> bool:
        try:
            await send(bus, result(ex, "pc2"))
        except Exception:  # still reconnecting
            return False
        return True

    await eventually(published, timeout=30, what="publish after the restart")

    async def completed() -> bool:
        return bool((await exec_detail(backend, ex["exec_id"]))["status"] == "completed")

    await eventually(completed, timeout=45, what="projection resumed after the restart")
    health = (await backend.client.get("/health")).json()
    assert health["broker"] is True


async def test_a_batch_decodes_while_the_previous_commits_and_each_is_acked_after_its_commit(
    bus: Bus, store_url: str
) -> None:
    upgrade_sync(store_url)
    db = Database(store_url)
    projector = ResultsProjector(bus, db, batch_max=1)
    ex = {"request_id": "q1", "exec_id": "e1", "job_id": "hello", "version": "1"}
    gate = threading.Event()
    try:
        await projector.prepare(reset=False)
        for pc in ("pc-a", "pc-b"):
            await send(bus, result(ex, pc))
        # The writer thread busy (as with another batch or a heartbeat flush): the first
        # batch's commit waits behind it, and the step returns — the next batch may come.
        busy = asyncio.ensure_future(db.write(lambda conn: gate.wait(DEADLINE)))
        await asyncio.wait_for(projector.step(), DEADLINE / 3)
        info = await bus.js.consumer_info(subjects.STREAM_RESULTS, RESULTS_CONSUMER.durable)
        assert info.num_ack_pending == 2  # delivered, and not acked before its commit
        second = asyncio.ensure_future(projector.step())  # decoded; waits for the first
        gate.set()
        await busy
        await asyncio.wait_for(second, DEADLINE)
        await asyncio.wait_for(projector.settle(), DEADLINE)

        async def acked() -> bool:
            i = await bus.js.consumer_info(subjects.STREAM_RESULTS, RESULTS_CONSUMER.durable)
            return i.num_ack_pending == 0

        await eventually(acked)
        rows = await db.read(lambda conn: results.results_of_exec(conn, "e1"))
        assert [(r["pc_id"], r["state"]) for r in rows] == [
            ("pc-a", "finished"), ("pc-b", "finished")
        ]
    finally:
        gate.set()
        await projector.teardown()
        db.close()
