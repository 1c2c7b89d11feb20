"""Schedules API and the central scheduler, in-process, against a real nats-server and a
real SQLite file. Agents are played by hand-built heartbeats and results on the bus (the
process-level tests with real agents live in ``test_scheduler_processes.py``).

No mocks, no sleeps as synchronisation: every wait polls a condition until a deadline.
Waiting for a fire time to pass is waiting for the clock, done by polling it too.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.aio.msg import Msg

from kanade.backend.inprocess import InProcessBackend, in_process_backend
from kanade.backend.settings import Settings
from kanade.backend.workers.scheduler import Scheduler
from kanade.bus import Bus
from kanade.core import subjects
from kanade.core.ids import new_id
from kanade.core.models.wire import Command, Heartbeat, Result, decode, encode
from kanade.core.scheduling import (
    exec_id_for,
    expected_version,
    occurrence_id,
    request_id_for,
)
from kanade.core.validation import parse_schedule
from polling import eventually as shared_eventually
from secured import authority_dir

pytestmark = pytest.mark.stores  # SQLite and PostgreSQL (tests/pgdb.py)

DEADLINE = 20.0

HELLO = {
    "id": "hello",
    "version": "1",
    "execute": {"shell": "sh", "script": "echo hello", "timeout": "30s"},
}


eventually = functools.partial(shared_eventually, timeout=DEADLINE)


async def clock_past(moment: datetime, *, timeout: float = DEADLINE) -> None:
    async def passed() -> bool:
        return datetime.now(UTC) > moment

    await eventually(passed, timeout=timeout, what=f"clock past {moment}")


def cron_at(moment: datetime) -> str:
    """A 6-field cron expression (UTC) that fires exactly at ``moment`` (whole second)."""
    t = moment.astimezone(UTC)
    return f"{t.second} {t.minute} {t.hour} {t.day} {t.month} *"


def soon(seconds: float = 2.0) -> datetime:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0) + timedelta(
        seconds=1
    )


@pytest.fixture
async def backend(nats_url: str, store_url: str) -> AsyncIterator[InProcessBackend]:
    settings = Settings.from_db_arg(
        authority_dir=authority_dir(),
        nats_url=nats_url,
        db=store_url,
        heartbeat_flush_s=0.05,
        reconcile_poll_s=1.0,
        scheduler_lease_ttl_s=2.0,
    )
    async with in_process_backend(settings) as b:
        await b.client.post("/api/jobs", json=HELLO)
        scheduler: Scheduler = b.app.state.scheduler

        async def leading() -> bool:
            return scheduler.is_leader

        await eventually(leading, what="scheduler leads")
        yield b


async def beat(
    backend: InProcessBackend, bus: Bus, *agents: tuple[str, list[str]], **kw: Any
) -> None:
    """Heartbeats; wait until the agents list shows each alive."""
    for pc, groups in agents:
        hb = Heartbeat(
            pc_id=pc,
            agent_version="0.1.0",
            hostname=pc,
            os_family="linux",
            groups=groups,
            sent_at=datetime.now(UTC),
            **kw,
        )
        await bus.nc.publish(subjects.heartbeat_subject(pc), encode(hb))

    async def all_alive() -> bool:
        items = (await backend.client.get("/api/agents")).json()["items"]
        return {pc for pc, _ in agents} <= {a["pc_id"] for a in items if a["status"] == "alive"}

    await eventually(all_alive, what="heartbeats projected")


async def report(bus: Bus, cmd: Command, pc: str, exit_code: int = 0) -> None:
    now = datetime.now(UTC)
    res = Result(
        result_id=new_id(),
        request_id=cmd.request_id,
        exec_id=cmd.exec_id,
        pc_id=pc,
        job_id=cmd.job_id,
        version=cmd.version,
        exit_code=exit_code,
        started_at=now,
        finished_at=now,
        schedule_id=cmd.schedule_id,
        nominal_time=cmd.nominal_time,
    )
    await bus.publish_js(subjects.result_subject(pc), encode(res), msg_id=res.result_id)


class Commands:
    """Every command the backend publishes, as seen by a core subscriber."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Command]] = []

    async def start(self, bus: Bus) -> None:
        async def on(msg: Msg) -> None:
            self.seen.append((msg.subject, decode(Command, msg.data)))

        self.sub = await bus.nc.subscribe(subjects.COMMANDS_ALL, cb=on)


async def executions(backend: InProcessBackend, schedule_id: str) -> list[dict[str, Any]]:
    items = (await backend.client.get("/api/executions", params={"limit": 1000})).json()["items"]
    return [e for e in items if e["schedule_id"] == schedule_id]


async def get(backend: InProcessBackend, path: str, **params: Any) -> Any:
    r = await backend.client.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


# --- catalog ------------------------------------------------------------------------------


async def test_crud_and_validation(backend: InProcessBackend, bus: Bus) -> None:
    c = backend.client
    bad = {
        "id": "bad",
        "job_id": "nope",
        "when": {"calendar": {"at": "25:00", "days": ["funday"]}},
        "target": {"all": True},
        "runs_on": "agent",
        "surprise": 1,
    }
    r = await c.post("/api/schedules", json=bad)
    assert r.status_code == 400
    paths = {e["path"]: e["reason"] for e in r.json()["errors"]}
    assert "surprise" in paths and paths["surprise"] == "unknown field"
    assert "job_id" in paths and "nope" in paths["job_id"]
    assert "when.calendar.at" in paths and "25:00" in paths["when.calendar.at"]
    assert any(p.startswith("when.calendar.days") for p in paths)
    combos = {
        "id": "combo",
        "job_id": "hello",
        "when": {"per_target": "once"},
        "target": {"all": True},
        "runs_on": "agent",
        "constraints": {"max_concurrent": 2},
    }
    r = await c.post("/api/schedules", json=combos)
    assert r.status_code == 400
    paths = {e["path"] for e in r.json()["errors"]}
    assert {"when.per_target", "constraints.max_concurrent"} <= paths, paths

    yaml_doc = (
        "id: nightly\njob_id: hello\n"
        "when:\n  calendar: {at: '02:00', days: [mon-fri]}\n"
        "target: {groups: [web]}\ntz: Europe/Berlin\n"
    )
    r = await c.post(
        "/api/schedules", content=yaml_doc, headers={"content-type": "application/yaml"}
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"]["next_fire_local"].endswith(("+01:00", "+02:00"))
    assert created["status"]["next_fire_local"][11:16] == "02:00"
    assert created["status"]["fired_count"] == 0
    # Same again: 200; a different schedule under the same id: 409.
    r = await c.post(
        "/api/schedules", content=yaml_doc, headers={"content-type": "application/yaml"}
    )
    assert r.status_code == 200
    other = yaml_doc.replace("02:00", "03:00")
    r = await c.post("/api/schedules", content=other, headers={"content-type": "application/yaml"})
    assert r.status_code == 409 and "PUT" in r.json()["error"]
    # Stored in KV as the canonical JSON document.
    entry = await (await bus.kv(subjects.KV_SCHEDULES)).get("nightly")
    stored = json.loads(entry.value or b"")
    assert stored["when"] == {"calendar": {"at": "02:00", "days": ["mon-fri"]}}
    assert parse_schedule(stored, strict=True).id == "nightly"

    r = await c.put("/api/schedules/nightly", content=other, headers={"content-type": "text/yaml"})
    assert r.status_code == 200 and r.json()["when"]["calendar"]["at"] == "03:00"
    r = await c.put("/api/schedules/other-id", content=other, headers={"content-type": "text/yaml"})
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "id"

    listed = await get(backend, "/api/schedules")
    assert [s["id"] for s in listed["items"]] == ["nightly"]
    assert {"next_fire", "last_fire", "fired_count", "skipped_count", "missed_count"} <= set(
        listed["items"][0]["status"]
    )

    r = await c.post("/api/schedules/nightly/disable")
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert r.json()["status"]["next_fire"] is None
    r = await c.post("/api/schedules/nightly/enable")
    assert r.json()["enabled"] is True and r.json()["status"]["next_fire"]

    assert (await c.post("/api/schedules/validate", json=bad)).status_code == 400
    r = await c.post("/api/schedules/validate", content=yaml_doc)
    assert r.status_code == 200 and r.json()["ok"]

    assert (await c.delete("/api/schedules/nightly")).status_code == 200
    assert (await c.get("/api/schedules/nightly")).status_code == 404
    assert (await c.delete("/api/schedules/nightly")).status_code == 404
    assert (await c.post("/api/schedules/nightly/enable")).status_code == 404
    assert (await c.post("/api/schedules", content=b"[1, 2]")).status_code == 400
    r = await c.post("/api/schedules", content=b"x", headers={"content-type": "image/png"})
    assert r.status_code == 415


# --- firing -------------------------------------------------------------------------------


async def test_a_fire_due_in_two_seconds_fires_exactly_once(
    backend: InProcessBackend, bus: Bus
) -> None:
    cmds = Commands()
    await cmds.start(bus)
    await beat(backend, bus, ("pc-1", []), ("pc-2", ["web"]))
    t = soon(2)
    body = {
        "id": "once",
        "job_id": "hello",
        "when": {"cron": cron_at(t)},
        "target": {"all": True},
        "tz": "utc",
    }
    assert (await backend.client.post("/api/schedules", json=body)).status_code == 201

    async def fired() -> list[dict[str, Any]]:
        return await executions(backend, "once")

    (ex,) = await eventually(fired, what="the fire")
    await clock_past(t + timedelta(seconds=2))  # a few more ticks: still one
    assert len(await executions(backend, "once")) == 1
    occ = occurrence_id("once", t)
    assert ex["exec_id"] == exec_id_for(occ)
    assert ex["initiated_by"] == "schedule:once"
    assert ex["nominal_time"].replace("+00:00", "Z") == t.isoformat().replace("+00:00", "Z")
    assert ex["expected_count"] == 2
    (subject, cmd), *rest = [(s, c) for s, c in cmds.seen if c.schedule_id == "once"]
    assert rest == []
    assert subject == "kanade.cmd.all.hello"
    assert cmd.request_id == request_id_for(occ)
    assert cmd.nominal_time == t and cmd.exec_id == ex["exec_id"]
    # The pin is in place and the audit names the schedule.
    pin = await (await bus.kv(subjects.KV_PINS)).get("hello")
    assert pin.value == b"1"
    st = await get(backend, "/api/schedules/once")
    assert st["status"]["fired_count"] == 1
    assert st["status"]["last_nominal"] == t.isoformat().replace("+00:00", "Z")
    assert st["decisions"][0]["result"] == "fired"
    assert st["status"]["next_fire"] != st["status"]["last_nominal"]
    metrics = (await backend.client.get("/metrics")).text
    assert 'kanade_schedule_fires_total{result="fired"} 1.0' in metrics


async def test_freeze_blocks_scheduled_fires_and_counts_them(
    backend: InProcessBackend, bus: Bus
) -> None:
    await beat(backend, bus, ("pc-1", []))
    r = await backend.client.put("/api/freeze", json={"reason": "change window"})
    assert r.status_code == 200, r.text
    t = soon(2)
    body = {
        "id": "frozen",
        "job_id": "hello",
        "when": {"cron": cron_at(t)},
        "target": {"all": True},
        "tz": "utc",
    }
    await backend.client.post("/api/schedules", json=body)

    async def skipped() -> Any:
        st = await get(backend, "/api/schedules/frozen")
        return st if st["status"]["skipped_count"] else None

    st = await eventually(skipped, what="the frozen fire counted as skipped")
    assert st["decisions"][0]["result"] == "skipped" and st["decisions"][0]["reason"] == "frozen"
    assert "freeze" in st["decisions"][0]["detail"]
    assert await executions(backend, "frozen") == []
    metrics = (await backend.client.get("/metrics")).text
    assert 'kanade_schedule_fires_total{result="skipped"} 1.0' in metrics
    # Manual execs are not gated by the freeze.
    r = await backend.client.post("/api/exec/hello", json={"target": {"all": True}})
    assert r.status_code == 201


async def test_per_pc_once_with_max_concurrent(backend: InProcessBackend, bus: Bus) -> None:
    cmds = Commands()
    await cmds.start(bus)
    pcs = [f"pc-{i}" for i in range(5)]
    await beat(backend, bus, *[(pc, ["lab"]) for pc in pcs])
    body = {
        "id": "capped",
        "job_id": "hello",
        "when": {"per_pc": "once"},
        "target": {"groups": ["lab"]},
        "constraints": {"max_concurrent": 2},
    }
    assert (await backend.client.post("/api/schedules", json=body)).status_code == 201
    answered: set[str] = set()
    max_in_flight = 0

    async def progress() -> bool:
        nonlocal max_in_flight
        execs = await executions(backend, "capped")
        in_flight = sum(
            e["expected_count"] - e["finished_count"]
            for e in execs
            if e["status"] in ("pending", "running")
        )
        max_in_flight = max(max_in_flight, in_flight)
        for _subject, cmd in list(cmds.seen):
            (pc,) = cmd.address.pcs
            if cmd.schedule_id == "capped" and cmd.request_id not in answered:
                answered.add(cmd.request_id)
                await report(bus, cmd, pc)
        done = {p for e in execs if e["status"] == "completed" for p in e["target"]["pcs"]}
        return done == set(pcs)

    await eventually(progress, timeout=30, what="all five pcs ran, two at a time")
    assert max_in_flight <= 2
    execs = await executions(backend, "capped")
    assert all(e["expected_count"] <= 2 for e in execs)
    ran = [p for e in execs for p in e["target"]["pcs"]]
    assert sorted(ran) == pcs  # each pc exactly once
    assert {c.request_id for _, c in cmds.seen if c.schedule_id == "capped"} == answered
    # Every pc succeeded once: later polls fire nobody.
    polls = backend.app.state.scheduler.ticks
    await eventually(lambda: _ticked_past(backend, polls + 3), what="three more polls")
    assert len(await executions(backend, "capped")) == len(execs)
    st = await get(backend, "/api/schedules/capped")
    assert any(d["reason"] == "max_concurrent" for d in st["decisions"]) or len(execs) == 3
    preview = await get(backend, "/api/schedules/capped/preview")
    assert {p["pc_id"]: p["reason"] for p in preview["pcs"]} == dict.fromkeys(pcs, "succeeded")
    # Nothing will fire again: no "next fire" a minute away, but why there is none.
    assert st["status"]["next_fire"] is None
    assert st["status"]["next_fire_note"].startswith("done: every targeted pc succeeded once")
    assert preview["next_fire"] is None and preview["next_fire_note"].startswith("done")


async def test_per_target_every_next_fire_is_when_the_target_is_due_again(
    backend: InProcessBackend, bus: Bus
) -> None:
    cmds = Commands()
    await cmds.start(bus)
    await beat(backend, bus, ("pt-1", ["pt"]), ("pt-2", ["pt"]))
    body = {"id": "daily-any", "job_id": "hello", "when": {"per_target": {"every": "1d"}},
            "target": {"groups": ["pt"]}}  # fmt: skip
    assert (await backend.client.post("/api/schedules", json=body)).status_code == 201

    async def answered() -> bool:
        for _subject, cmd in list(cmds.seen):
            if cmd.schedule_id == "daily-any":
                await report(bus, cmd, cmd.address.pcs[0])
                return True
        return False

    await eventually(answered, timeout=30, what="the target fired once")

    def due_in(st: dict[str, Any]) -> timedelta:
        return datetime.fromisoformat(st["next_fire"].replace("Z", "+00:00")) - datetime.now(UTC)

    async def settled() -> dict[str, Any] | None:
        st = (await get(backend, "/api/schedules/daily-any"))["status"]
        return st if st["next_fire"] and due_in(st) > timedelta(hours=1) else None

    # Due again a day after the member's success — not at the next one-second poll (and,
    # until the result is in, when its dispatch mark ends).
    st = await eventually(settled, timeout=30, what="the next fire a day after the success")
    assert timedelta(hours=23) < due_in(st) <= timedelta(days=1, seconds=5)
    assert "due again" in st["next_fire_note"]


async def _ticked_past(backend: InProcessBackend, n: int) -> bool:
    return bool(backend.app.state.scheduler.ticks >= n)


async def test_preview_shapes(backend: InProcessBackend, bus: Bus) -> None:
    await beat(backend, bus, ("pc-1", ["web"]), ("pc-2", ["web"]))
    cal = {
        "id": "cal",
        "job_id": "hello",
        "when": {"calendar": {"at": "09:30"}},
        "target": {"groups": ["web"]},
        "tz": "America/New_York",
    }
    per = {
        "id": "per",
        "job_id": "hello",
        "when": {"per_pc": {"every": "1d"}},
        "target": {"pcs": ["pc-1", "pc-9"]},
        "enabled": False,
    }
    for body in (cal, per):
        assert (await backend.client.post("/api/schedules", json=body)).status_code == 201
    pv = await get(backend, "/api/schedules/cal/preview", n=3)
    assert pv["tz"] == "America/New_York" and pv["shape"] == "calendar"
    assert len(pv["fires"]) == 3 and all(f["local"][11:16] == "09:30" for f in pv["fires"])
    assert all(f["utc"].endswith("Z") for f in pv["fires"])
    assert pv["target_pcs"] == ["pc-1", "pc-2"] and pv["pcs"] == []
    pv = await get(backend, "/api/schedules/per/preview")
    assert pv["shape"] == "per_pc"
    assert {p["pc_id"]: (p["would_fire"], p["reason"]) for p in pv["pcs"]} == {
        "pc-1": (True, "never_succeeded"),
        "pc-9": (False, "offline"),
    }
    assert "the schedule is disabled" in pv["warnings"]
    # Disabled: the times it would fire once enabled, each marked (preview before enabling).
    disabled_cal = {**cal, "id": "cal-off", "enabled": False}
    assert (await backend.client.post("/api/schedules", json=disabled_cal)).status_code == 201
    pv = await get(backend, "/api/schedules/cal-off/preview", n=3)
    assert len(pv["fires"]) == 3 and all(f["disabled"] for f in pv["fires"])
    assert all(f["local"][11:16] == "09:30" for f in pv["fires"])
    st = (await get(backend, "/api/schedules/cal-off"))["status"]
    assert st["next_fire"] is None and st["next_fire_note"] == "disabled"
    assert (
        await backend.client.get("/api/schedules/per/preview", params={"n": 0})
    ).status_code == 400


async def test_disable_cascade_revokes_and_cascade_kill_kills(
    backend: InProcessBackend, bus: Bus
) -> None:
    kills: list[dict[str, Any]] = []

    async def on_kill(msg: Msg) -> None:
        kills.append(json.loads(msg.data))

    await bus.nc.subscribe(subjects.KILL_SUBJECT, cb=on_kill)
    await beat(backend, bus, ("pc-1", []))
    t = soon(1.5)
    body = {
        "id": "longrun",
        "job_id": "hello",
        "when": {"cron": cron_at(t)},
        "target": {"pcs": ["pc-1"]},
        "tz": "utc",
    }
    cmds = Commands()
    await cmds.start(bus)
    await backend.client.post("/api/schedules", json=body)

    async def fired() -> list[dict[str, Any]]:
        # The exec row exists from the fire's preparation (up to PREPARE_AHEAD before its
        # instant); the fire happened once its command is out.
        if not any(c.schedule_id == "longrun" for _, c in cmds.seen):
            return []
        return await executions(backend, "longrun")

    (ex,) = await eventually(fired, what="fired")

    r = await backend.client.post("/api/schedules/longrun/disable", params={"cascade": "true"})
    assert r.status_code == 200, r.text
    assert r.json()["enabled"] is False and r.json()["revoked"]["job_id"] == "hello"
    assert r.json()["killed"] == []
    rev = json.loads((await (await bus.kv(subjects.KV_REVOCATIONS)).get("hello")).value or b"")
    assert rev["by"] == "anonymous" and "longrun" in rev["reason"] and rev["revoked_at"]
    assert kills == []

    r = await backend.client.post("/api/schedules/longrun/disable", params={"cascade_kill": "true"})
    assert r.status_code == 200, r.text
    assert [k["exec_id"] for k in r.json()["killed"]] == [ex["exec_id"]]
    await eventually(lambda: _has(kills, {"exec_id": ex["exec_id"]}), what="kill broadcast")
    cancelled = (await get(backend, f"/api/executions/{ex['exec_id']}"))["status"]
    assert cancelled == "cancelled"


async def _has(items: list[Any], item: Any) -> bool:
    return item in items


async def test_drift_goes_to_zero_once_the_agent_reports_the_expected_version(
    backend: InProcessBackend, bus: Bus
) -> None:
    # The agent-side scheduler is another engineer's work: the heartbeat with the
    # applied schedule-set version is published by hand here.
    await beat(backend, bus, ("pc-1", ["web"]), ("pc-2", []))
    body = {
        "id": "local",
        "job_id": "hello",
        "when": {"per_pc": {"every": "1h"}},
        "target": {"groups": ["web"]},
        "runs_on": "agent",
    }
    await backend.client.post("/api/schedules", json=body)
    drift = await get(backend, "/api/agents/drift")
    by_pc = {d["pc_id"]: d for d in drift["items"]}
    assert by_pc["pc-1"]["drift"] and by_pc["pc-1"]["expected_schedules"] == ["local"]
    assert by_pc["pc-2"]["expected_schedules"] == []
    schedule = parse_schedule(body, strict=True)
    want = expected_version([schedule], "pc-1", ["web"])
    assert by_pc["pc-1"]["expected_version"] == want
    await beat(backend, bus, ("pc-1", ["web"]), schedule_set_version=want)
    await beat(backend, bus, ("pc-2", []), schedule_set_version=expected_version([], "pc-2", []))

    async def in_sync() -> bool:
        return (await get(backend, "/api/agents/drift"))["drifted"] == 0

    await eventually(in_sync, what="drift to zero")
    one = await get(backend, "/api/agents/pc-1/drift")
    assert one["applied_version"] == want and one["drift"] is False
    assert (await backend.client.get("/api/agents/nobody/drift")).status_code == 404
    # Editing the schedule changes the expected version: drift again until re-applied.
    body["when"] = {"per_pc": {"every": "2h"}}
    await backend.client.put("/api/schedules/local", json=body)
    assert (await get(backend, "/api/agents/pc-1/drift"))["drift"] is True


async def test_two_schedulers_without_a_lease_still_fire_each_occurrence_once(
    backend: InProcessBackend, bus: Bus
) -> None:
    """Layers 2 and 3 on their own: a second scheduler on another lease key leads at the
    same time (as a paused process waking up after losing its lease would). The exec-row
    claim and the broker's Nats-Msg-Id dedup keep every occurrence to one exec and one
    stored command."""
    services = backend.services
    rogue = Scheduler(
        services.db,
        services.link.bus,
        services.execs.budgets,
        lease_key="scheduler.lease-rogue",
        lease_ttl_s=2.0,
    )
    task = asyncio.create_task(rogue.run())
    try:
        await eventually(lambda: _leads(rogue), what="the rogue scheduler leads")
        info = await bus.js.stream_info(subjects.STREAM_COMMANDS)
        seq0 = info.state.last_seq
        await beat(backend, bus, ("pc-1", []))
        start = soon(1)
        body = {
            "id": "every-sec",
            "job_id": "hello",
            "when": {"cron": "* * * * * *"},
            "target": {"all": True},
            "tz": "utc",
        }
        await backend.client.post("/api/schedules", json=body)
        rogue.wake()
        await clock_past(start + timedelta(seconds=4))
        await backend.client.post("/api/schedules/every-sec/disable")

        # A fire prepared ahead of its instant (an exec row claimed up to ~2 s early) is
        # withdrawn by the disable: settled once every recorded exec has its command.
        async def settled() -> list[dict[str, Any]]:
            execs = await executions(backend, "every-sec")
            stats = await get(backend, "/api/schedules/every-sec", decisions=200)
            info = await bus.js.stream_info(subjects.STREAM_COMMANDS)
            stored = info.state.last_seq - seq0
            # one stored command per recorded occurrence
            return execs if stats["decisions"] and stored == len(execs) else []

        execs = await eventually(settled, what="fires recorded, one stored command each")
        nominals = [e["nominal_time"] for e in execs]
        assert len(nominals) == len(set(nominals)) >= 3
        assert all(
            e["exec_id"]
            == exec_id_for(occurrence_id("every-sec", datetime.fromisoformat(e["nominal_time"])))
            for e in execs
        )
        decisions = (await get(backend, "/api/schedules/every-sec", decisions=200))["decisions"]
        fired = [d for d in decisions if d["result"] == "fired"]
        dups = [d for d in decisions if d["result"] == "duplicate"]
        assert len(fired) == len(execs)
        assert dups, "the second scheduler must have met already-claimed occurrences"
    finally:
        task.cancel()
        await rogue.stop()


async def _leads(s: Scheduler) -> bool:
    return s.is_leader
