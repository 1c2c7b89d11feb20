"""Fires prepared ahead of their instant (kanade.backend.workers.scheduler.ahead; "Prepared
ahead" in docs/scheduler.md), in-process against a real nats-server and a real SQLite file.

Each test widens the scheduler's preparation window so that there is time to act between
"prepared" (exec row claimed, commands built) and the nominal instant, then checks that
what changed in between is honoured: nothing is published early, a disabled or deleted
schedule does not fire, an edit, a new job version or a freeze applies, a lost lease
publishes nothing and the next leader fires the occurrence once, and a claim a crashed
leader left behind is published (or released) by whoever decides the occurrence next.

No sleeps as synchronisation: every wait polls a condition (or the clock) until a deadline.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.aio.msg import Msg

from kanade.backend.catalog.dispatch_state import LEASE_KEY
from kanade.backend.inprocess import InProcessBackend, in_process_backend
from kanade.backend.settings import Settings
from kanade.backend.store import scheduling as store
from kanade.backend.store.scheduling import DecisionRow
from kanade.backend.workers.scheduler import Scheduler
from kanade.bus import Bus
from kanade.core import subjects
from kanade.core.models.wire import Command, decode
from kanade.core.scheduling import exec_id_for, occurrence_id, request_id_for
from polling import eventually as shared_eventually
from secured import authority_dir

DEADLINE = 20.0
AHEAD = timedelta(seconds=4)

HELLO = {
    "id": "hello",
    "version": "1",
    "execute": {"shell": "sh", "script": "echo hello", "timeout": "30s"},
}

eventually = functools.partial(shared_eventually, timeout=DEADLINE)


def cron_at(moment: datetime) -> str:
    t = moment.astimezone(UTC)
    return f"{t.second} {t.minute} {t.hour} {t.day} {t.month} *"


def instant(seconds: float) -> datetime:
    """A whole second more than ``seconds`` from now."""
    t = datetime.now(UTC) + timedelta(seconds=seconds)
    return t.replace(microsecond=0) + timedelta(seconds=1)


async def clock_past(moment: datetime) -> None:
    async def passed() -> bool:
        return datetime.now(UTC) > moment

    await eventually(passed, what=f"clock past {moment}")


@pytest.fixture
async def backend(nats_url: str, store_url: str) -> AsyncIterator[InProcessBackend]:
    settings = Settings.from_db_arg(
        authority_dir=authority_dir(),
        nats_url=nats_url,
        db=store_url,
        heartbeat_flush_s=0.05,
        scheduler_lease_ttl_s=2.0,
    )
    async with in_process_backend(settings) as b:
        assert (await b.client.post("/api/jobs", json=HELLO)).status_code == 201
        scheduler(b).prepare_ahead = AHEAD

        async def leading() -> bool:
            return scheduler(b).is_leader

        await eventually(leading, what="scheduler leads")
        yield b


def scheduler(backend: InProcessBackend) -> Scheduler:
    s: Scheduler = backend.app.state.scheduler
    return s


class Commands:
    """Every command published, with the wall-clock time it reached a core subscriber."""

    def __init__(self) -> None:
        self.seen: list[tuple[datetime, str, Command]] = []

    async def start(self, bus: Bus) -> Commands:
        async def on(msg: Msg) -> None:
            self.seen.append((datetime.now(UTC), msg.subject, decode(Command, msg.data)))

        await bus.nc.subscribe(subjects.COMMANDS_ALL, cb=on)
        return self

    def of(self, schedule_id: str) -> list[tuple[datetime, str, Command]]:
        return [s for s in self.seen if s[2].schedule_id == schedule_id]


async def get(backend: InProcessBackend, path: str, **params: Any) -> Any:
    r = await backend.client.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def executions(backend: InProcessBackend, schedule_id: str) -> list[dict[str, Any]]:
    items = (await get(backend, "/api/executions", limit=1000))["items"]
    return [e for e in items if e["schedule_id"] == schedule_id]


async def create(backend: InProcessBackend, sid: str, t: datetime, **extra: Any) -> None:
    body = {
        "id": sid,
        "job_id": "hello",
        "when": {"cron": cron_at(t)},
        "target": {"pcs": ["pc-1"]},
        "tz": "utc",
        **extra,
    }
    r = await backend.client.post("/api/schedules", json=body)
    assert r.status_code == 201, r.text


async def prepared(backend: InProcessBackend, sid: str, t: datetime) -> None:
    async def ready() -> bool:
        return scheduler(backend).prepared().get(sid) == t

    await eventually(ready, what=f"{sid} prepared for {t}")
    assert datetime.now(UTC) < t, "prepared too late for this test to act before the instant"


async def stored_commands(bus: Bus) -> int:
    return int((await bus.js.stream_info(subjects.STREAM_COMMANDS)).state.last_seq)


async def test_a_prepared_fire_goes_out_at_its_instant_never_before(
    backend: InProcessBackend, bus: Bus
) -> None:
    cmds = await Commands().start(bus)
    t = instant(AHEAD.total_seconds() + 1)
    await create(backend, "ahead", t)
    await prepared(backend, "ahead", t)
    # Claimed ahead: the row exists, the fire is counted, nothing is published yet.
    (ex,) = await executions(backend, "ahead")
    assert ex["exec_id"] == exec_id_for(occurrence_id("ahead", t))
    assert ex["status"] == "pending" and ex["nominal_time"].startswith(t.isoformat()[:19])
    assert cmds.of("ahead") == []

    async def out() -> Any:
        return cmds.of("ahead")

    ((arrived, subject, cmd),) = await eventually(out, what="the command")
    assert arrived >= t, f"published {(t - arrived).total_seconds()}s before its instant"
    assert subject == subjects.command_subject("pc", "pc-1", "hello")
    assert cmd.request_id == request_id_for(occurrence_id("ahead", t))
    assert cmd.nominal_time == t and cmd.issued_at == t
    await clock_past(t + timedelta(seconds=2))
    assert len(cmds.of("ahead")) == 1
    assert len(await executions(backend, "ahead")) == 1
    st = await get(backend, "/api/schedules/ahead")
    assert st["status"]["fired_count"] == 1
    assert [d["result"] for d in st["decisions"]] == ["fired"]
    metrics = (await backend.client.get("/metrics")).text
    assert 'kanade_schedule_fires_total{result="fired"} 1.0' in metrics
    assert "kanade_schedule_fire_lateness_seconds_count 1.0" in metrics


@pytest.mark.parametrize("how", ["disable", "delete"])
async def test_a_schedule_disabled_or_deleted_before_the_instant_does_not_fire(
    backend: InProcessBackend, bus: Bus, how: str
) -> None:
    cmds = await Commands().start(bus)
    t = instant(AHEAD.total_seconds() + 1)
    await create(backend, "gone", t)
    await prepared(backend, "gone", t)
    assert len(await executions(backend, "gone")) == 1
    seq = await stored_commands(bus)
    if how == "disable":
        r = await backend.client.post("/api/schedules/gone/disable")
    else:
        r = await backend.client.delete("/api/schedules/gone")
    assert r.status_code == 200, r.text

    async def withdrawn() -> bool:
        return "gone" not in scheduler(backend).prepared() and not await executions(backend, "gone")

    await eventually(withdrawn, what="the prepared fire withdrawn, its claim released")
    await clock_past(t + timedelta(seconds=2))
    assert cmds.of("gone") == []
    assert await stored_commands(bus) == seq
    assert await executions(backend, "gone") == []
    if how == "disable":
        st = await get(backend, "/api/schedules/gone")
        assert st["status"]["fired_count"] == 0 and st["status"]["last_fire"] is None
        assert st["decisions"] == []


async def test_an_edit_before_the_instant_fires_the_new_definition_once(
    backend: InProcessBackend, bus: Bus
) -> None:
    cmds = await Commands().start(bus)
    t = instant(AHEAD.total_seconds() + 1)
    await create(backend, "edited", t)
    await prepared(backend, "edited", t)
    body = {
        "id": "edited",
        "job_id": "hello",
        "when": {"cron": cron_at(t)},
        "target": {"pcs": ["pc-2"]},
        "tz": "utc",
    }
    r = await backend.client.put("/api/schedules/edited", json=body)
    assert r.status_code == 200, r.text

    async def out() -> Any:
        return cmds.of("edited")

    ((arrived, subject, cmd),) = await eventually(out, what="the command")
    assert arrived >= t
    assert subject == subjects.command_subject("pc", "pc-2", "hello")
    await clock_past(t + timedelta(seconds=2))
    assert len(cmds.of("edited")) == 1
    (ex,) = await executions(backend, "edited")
    assert ex["target"]["pcs"] == ["pc-2"] and ex["exec_id"] == cmd.exec_id
    st = await get(backend, "/api/schedules/edited")
    assert st["status"]["fired_count"] == 1


async def test_a_new_job_version_before_the_instant_is_what_fires(
    backend: InProcessBackend, bus: Bus
) -> None:
    cmds = await Commands().start(bus)
    t = instant(AHEAD.total_seconds() + 1)
    await create(backend, "versioned", t)
    await prepared(backend, "versioned", t)
    r = await backend.client.post("/api/jobs", json={**HELLO, "version": "2"})
    assert r.status_code == 201, r.text

    async def out() -> Any:
        return cmds.of("versioned")

    ((arrived, _subject, cmd),) = await eventually(out, what="the command")
    assert arrived >= t
    assert cmd.version == "2"
    pin = await (await bus.kv(subjects.KV_PINS)).get("hello")
    assert pin.value == b"2"
    await clock_past(t + timedelta(seconds=2))
    assert len(cmds.of("versioned")) == 1
    (ex,) = await executions(backend, "versioned")
    assert ex["version"] == "2"


async def test_a_freeze_set_before_the_instant_skips_the_prepared_fire(
    backend: InProcessBackend, bus: Bus
) -> None:
    cmds = await Commands().start(bus)
    t = instant(AHEAD.total_seconds() + 1)
    await create(backend, "frozen", t)
    await prepared(backend, "frozen", t)
    r = await backend.client.put("/api/freeze", json={"reason": "change window"})
    assert r.status_code == 200, r.text

    async def skipped() -> Any:
        st = await get(backend, "/api/schedules/frozen")
        return st if st["status"]["skipped_count"] else None

    st = await eventually(skipped, what="the occurrence skipped as frozen")
    assert st["decisions"][0]["reason"] == "frozen"
    assert st["status"]["fired_count"] == 0
    assert cmds.of("frozen") == []
    assert await executions(backend, "frozen") == []


async def test_a_lease_lost_before_the_instant_publishes_nothing_and_the_next_leader_fires_once(
    backend: InProcessBackend, bus: Bus
) -> None:
    cmds = await Commands().start(bus)
    s = scheduler(backend)
    t = instant(AHEAD.total_seconds() + 1)
    await create(backend, "handover", t)
    await prepared(backend, "handover", t)
    seq = await stored_commands(bus)
    # Somebody else writes the lease: our next renew fails and we step down at once,
    # before the instant; we take the lease back after a silent TTL (2 s) and lead again.
    kv = await bus.kv(subjects.KV_DISPATCH)
    await kv.put(LEASE_KEY, json.dumps({"holder": "intruder", "ttl_s": 2.0}).encode())

    async def stepped_down() -> bool:
        return not s.is_leader and not s.prepared()

    await eventually(stepped_down, what="the scheduler steps down")
    assert cmds.of("handover") == []

    async def out() -> Any:
        return cmds.of("handover")

    ((arrived, _subject, cmd),) = await eventually(out, what="the command, once leading again")
    assert arrived >= t
    assert cmd.exec_id == exec_id_for(occurrence_id("handover", t))
    await clock_past(max(datetime.now(UTC), t) + timedelta(seconds=2))
    assert len(cmds.of("handover")) == 1
    assert await stored_commands(bus) == seq + 1
    assert len(await executions(backend, "handover")) == 1
    st = await get(backend, "/api/schedules/handover")
    assert st["status"]["fired_count"] == 1  # counted by the claim, found again as claimed
    results = sorted(d["result"] for d in st["decisions"])
    assert results == ["duplicate", "fired"]


async def _claim_as_a_crashed_leader(backend: InProcessBackend, sid: str, t: datetime) -> str:
    """What a leader that prepared the occurrence at ``t`` and died before its instant
    left behind: the claimed exec row (created long ago, as found after a restart that
    took longer than REPUBLISH_WINDOW) and its ``fired`` decision — nothing published."""
    occ = occurrence_id(sid, t)
    exec_id = exec_id_for(occ)
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    row = {
        "exec_id": exec_id,
        "kind": "job",
        "job_id": "hello",
        "version": "1",
        "target": {"all": False, "groups": [], "pcs": ["pc-1"]},
        "expected_pcs": ["pc-1"],
        "expected_count": 1,
        "status": "pending",
        "initiated_by": f"schedule:{sid}",
        "schedule_id": sid,
        "nominal_time": t,
        "created_at": long_ago,
        "request_id": request_id_for(occ),
        "inventory_hint": None,
        "check_hint": None,
    }
    decision = DecisionRow(sid, occ, t, "fired", None, "dispatched", exec_id=exec_id, pcs=1)

    def work(conn: Any) -> None:
        assert store.claim_executions(conn, [row], long_ago) == {exec_id}
        store.record_decisions(conn, [decision], long_ago)

    await backend.services.db.write(work)
    return exec_id


@pytest.mark.stores  # the claim rows: SQLite and PostgreSQL
async def test_an_old_claim_never_published_is_published_when_the_occurrence_fires(
    backend: InProcessBackend, bus: Bus
) -> None:
    cmds = await Commands().start(bus)
    t = instant(6)  # see the frozen variant below
    exec_id = await _claim_as_a_crashed_leader(backend, "orphan", t)
    await create(backend, "orphan", t)

    async def out() -> Any:
        return cmds.of("orphan")

    ((_arrived, _subject, cmd),) = await eventually(out, what="the command")
    assert cmd.exec_id == exec_id
    await clock_past(t + timedelta(seconds=2))
    assert len(cmds.of("orphan")) == 1
    st = await get(backend, "/api/schedules/orphan")
    assert st["status"]["fired_count"] == 1
    assert "never published" in st["decisions"][0]["detail"]


@pytest.mark.stores  # the claim rows: SQLite and PostgreSQL
async def test_a_claim_never_published_for_an_occurrence_not_fired_is_released(
    backend: InProcessBackend, bus: Bus
) -> None:
    cmds = await Commands().start(bus)
    # Far enough ahead that claim, freeze and create are done before it on a loaded
    # machine (an instant already past when the schedule is created is never decided).
    t = instant(6)
    await _claim_as_a_crashed_leader(backend, "orphan-frozen", t)
    r = await backend.client.put("/api/freeze", json={"reason": "change window"})
    assert r.status_code == 200, r.text
    await create(backend, "orphan-frozen", t)

    async def skipped() -> Any:
        st = await get(backend, "/api/schedules/orphan-frozen")
        return st if st["status"]["skipped_count"] else None

    st = await eventually(skipped, what="the occurrence skipped as frozen")
    assert st["status"]["fired_count"] == 0
    assert [d["result"] for d in st["decisions"]] == ["skipped"]
    assert await executions(backend, "orphan-frozen") == []
    assert cmds.of("orphan-frozen") == []
