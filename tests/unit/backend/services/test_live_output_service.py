"""Following one exec's live output (kanade.backend.services.live_output): checked before
anything streams, chunks in order, and the end — once the exec ended and each pc that was
sending said ``final``, or after the grace."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import update

from kanade.backend.errors import Invalid, NotFound
from kanade.backend.messaging.live import hub
from kanade.backend.messaging.liveout import LiveRelay
from kanade.backend.services.live_output import LiveEvent, LiveOutputService
from kanade.backend.store import executions
from kanade.backend.store.database import Database
from kanade.backend.store.tables import executions as executions_table
from kanade.core import subjects
from kanade.core.models.wire import LiveChunk, encode
from polling import eventually

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EXEC = {
    "exec_id": "e1", "kind": "adhoc", "job_id": "adhoc-e1", "version": "1",
    "target": {"all": False, "groups": [], "pcs": ["pc-a", "pc-b"]},
    "expected_pcs": ["pc-a", "pc-b"], "expected_count": 2, "status": "pending",
    "initiated_by": "anonymous", "schedule_id": None, "nominal_time": None, "created_at": T0,
    "request_id": "req-e1",
}  # fmt: skip


class FakeNc:
    async def subscribe(self, subject: str, **_: Any) -> Any:
        return self

    async def unsubscribe(self) -> None:
        pass

    async def publish(self, subject: str, data: bytes) -> None:
        pass


class FakeBus:
    nc = FakeNc()


@pytest.fixture
def db(migrated_url: str) -> Iterator[Database]:
    database = Database(migrated_url)
    try:
        yield database
    finally:
        database.close()


async def _with_exec(db: Database, status: str = "running") -> None:
    def write(conn: Any) -> None:
        executions.upsert_executions(conn, [EXEC], T0)
        conn.execute(update(executions_table).values(status=status))

    await db.write(write)


def _service(db: Database) -> tuple[LiveOutputService, LiveRelay]:
    relay = LiveRelay(lambda: FakeBus())  # type: ignore[arg-type,return-value]
    return LiveOutputService(db, relay, end_grace_s=0.5, check_s=60), relay


def _send(relay: LiveRelay, pc: str, seq: int, **kw: Any) -> None:
    chunk = LiveChunk(exec_id="e1", pc_id=pc, seq=seq, **kw)
    relay.relay(subjects.live_subject(pc, "e1"), encode(chunk))


async def test_unknown_or_malformed_execs_are_refused_before_streaming(db: Database) -> None:
    service, _ = _service(db)
    with pytest.raises(NotFound):
        await service.follow("e1")
    with pytest.raises(Invalid):
        await service.follow("a.b")
    await _with_exec(db)
    with pytest.raises(Invalid):
        await service.follow("e1", ["pc-a", "no good"])


async def test_an_ended_exec_says_hello_and_end_at_once(db: Database) -> None:
    await _with_exec(db, "completed")
    service, relay = _service(db)
    events = [e async for e in await service.follow("e1")]
    assert [e.kind for e in events] == ["hello", "end"]
    assert events[-1].data == {"exec_id": "e1", "status": "completed"}
    assert relay.followed() == []  # nothing was subscribed


async def test_chunks_then_the_end_once_the_senders_said_final_or_the_grace_passed(
    db: Database,
) -> None:
    await _with_exec(db)
    service, relay = _service(db)
    got: list[LiveEvent] = []

    async def read() -> None:
        async for event in await service.follow("e1"):
            got.append(event)

    reader = asyncio.create_task(read())
    await eventually(relay.watched, timeout=5, what="the reader watching")
    _send(relay, "pc-a", 0, stdout="a\n")
    _send(relay, "pc-b", 0, stdout="b\n")  # pc-b never says final
    _send(relay, "pc-a", 1, final=True)

    def ended(conn: Any) -> None:
        conn.execute(update(executions_table).values(status="completed"))

    await db.write(ended)
    hub.publish("execs", {"exec_ids": ["e1"]})
    await asyncio.wait_for(reader, 10)
    assert [e.kind for e in got] == ["hello", "chunk", "chunk", "chunk", "end"]
    assert [(e.data["pc_id"], e.data["seq"]) for e in got[1:4]] == [
        ("pc-a", 0), ("pc-b", 0), ("pc-a", 1),
    ]  # fmt: skip
    assert got[-1].data == {"exec_id": "e1", "status": "completed"}
