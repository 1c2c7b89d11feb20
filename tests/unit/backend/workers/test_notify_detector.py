"""The notification detector (kanade.backend.workers.notify.detector) on a real SQLite file
with an injected clock: one event per fact and kind, nothing told twice when it reads the
same rows again, nothing from before the database's notification floor, nothing while
another replica leads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Connection

from kanade.backend.store import agent_decisions, agents, scheduling
from kanade.backend.store.database import Database
from kanade.backend.store.scheduling import DecisionRow
from kanade.backend.store.tables import notify_deliveries, notify_events
from kanade.backend.workers.notify.detector import NotifyDetector
from notify_rows import T0, add_webhook, failed_exec


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Iterator[Clock]:
    yield Clock(T0)


def _detector(db: Database, clock: Clock, leading: list[bool] | None = None) -> NotifyDetector:
    lead = leading if leading is not None else [True]
    return NotifyDetector(db, leading=lambda: lead[0], clock=clock, batch=3)


async def _events(db: Database) -> list[tuple[str, str]]:
    def read(conn: Connection) -> list[tuple[str, str]]:
        q = select(notify_events.c.kind, notify_events.c.summary).order_by(notify_events.c.kind)
        return [(str(k), str(s)) for k, s in conn.execute(q)]

    return await db.read(read)


async def _deliveries(db: Database) -> list[dict[str, Any]]:
    return await db.read(
        lambda c: [dict(r) for r in c.execute(select(notify_deliveries)).mappings()]
    )


async def test_each_fact_becomes_one_event_and_one_delivery(db: Database, clock: Clock) -> None:
    await db.write(lambda c: add_webhook(c, "ops"))
    detector = _detector(db, clock)
    await detector.step()  # sets the floor at T0
    at = T0 + timedelta(seconds=10)

    def facts(conn: Connection) -> None:
        for i in range(5):  # more than one batch (3): read on in keyset order
            failed_exec(conn, f"e{i}", at)
        scheduling.record_decisions(
            conn,
            [DecisionRow("s1", "s1@1", at, "skipped", "frozen", "fleet frozen"),
             DecisionRow("s1", "s1@0", at, "missed", "catchup_skip", "1")],
            at,
        )  # fmt: skip
        agent_decisions.record(
            conn,
            [{"decision_id": f"{pc}:a@1:skipped", "schedule_id": "a", "pc_id": pc,
              "occurrence_id": "a@1", "nominal_time": at, "decided_at": at, "result": "skipped",
              "reason": "outside_window", "detail": None, "count": 1, "request_id": None,
              "recorded_at": at, "epoch": "e",
              "totals": {"fired": 0, "skipped": 1, "missed": 0}} for pc in ("pc-1", "pc-2")],
            at,
        )  # fmt: skip
        agents.upsert_agents(
            conn,
            [{"pc_id": "quiet", "hostname": "q", "groups": [], "last_seen": at,
              "first_seen": at}],
        )  # fmt: skip

    await db.write(facts)
    clock.now = at + timedelta(minutes=11)  # "quiet" crossed its 10 minutes
    while await detector.step():
        pass
    kinds = [k for k, _ in await _events(db)]
    assert kinds.count("exec.failed") == 5
    assert kinds.count("schedule.skipped") == 2  # the central one, the agents' one
    assert kinds.count("schedule.missed") == 1
    assert kinds.count("agent.offline") == 1
    assert ("schedule.skipped", "schedule a: fire at 2026-03-01T12:00:10Z skipped "
            "(outside_window) on 2 pc(s)") in await _events(db)  # fmt: skip
    sent = await _deliveries(db)
    told = [e for d in sent for e in d["event_ids"]]
    assert len(told) == len(set(told)) == 9  # every event in exactly one delivery
    by_kind: dict[str, int] = {}
    for d in sent:
        by_kind[d["kind"]] = by_kind.get(d["kind"], 0) + len(d["event_ids"])
    assert by_kind == {"exec.failed": 5, "schedule.skipped": 2, "schedule.missed": 1,
                       "agent.offline": 1}  # fmt: skip
    # Read again (a restart, a new term: the lookback is read again): nothing new.
    again = _detector(db, clock)
    clock.now += timedelta(seconds=30)
    while await again.step():
        pass
    assert len(await _events(db)) == 9
    assert len(await _deliveries(db)) == len(sent)


async def test_nothing_before_the_floor_is_told(db: Database, clock: Clock) -> None:
    # History the database already had (or rebuilt from the streams) before notifications
    # started: a failed exec and an agent that went quiet long ago.
    await db.write(lambda c: failed_exec(c, "old", T0 - timedelta(minutes=5)))
    await db.write(lambda c: add_webhook(c, "ops", created_at=T0 - timedelta(days=1)))
    gone = {"pc_id": "gone", "hostname": "g", "groups": [],
            "last_seen": T0 - timedelta(minutes=9), "first_seen": T0}  # fmt: skip
    await db.write(lambda c: agents.upsert_agents(c, [gone]))
    detector = _detector(db, clock)
    clock.now = T0 + timedelta(minutes=30)  # "gone" crossed 10 minutes after the floor...
    await detector.step()
    # ...but the floor was set at this first pass: its silence began before it.
    assert await _events(db) == []


async def test_only_the_leader_detects(db: Database, clock: Clock) -> None:
    await db.write(lambda c: add_webhook(c, "ops"))
    leading = [True]
    detector = _detector(db, clock, leading)
    await detector.step()  # the floor: T0
    leading[0] = False  # another replica holds the lease now
    await db.write(lambda c: failed_exec(c, "e1", T0 + timedelta(seconds=1)))
    clock.now = T0 + timedelta(seconds=5)
    await detector.step()
    assert await _events(db) == []
    leading[0] = True
    await detector.step()
    assert [k for k, _ in await _events(db)] == ["exec.failed"]


async def test_only_what_an_enabled_webhook_wants_is_read(db: Database, clock: Clock) -> None:
    detector = _detector(db, clock)
    await detector.step()  # the floor: T0
    await db.write(lambda c: failed_exec(c, "e1", T0 + timedelta(seconds=1)))
    clock.now = T0 + timedelta(seconds=5)
    await detector.step()
    assert await _events(db) == []  # no webhook: nothing is read, nothing recorded
    await db.write(lambda c: add_webhook(c, "halts", events=["rollout.halted"]))
    clock.now += timedelta(seconds=5)
    await detector.step()
    assert await _events(db) == []  # nobody wants exec.failed
