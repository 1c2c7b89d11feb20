"""Projection of the result plane and execution records into SQL (SPEC §4.2).

Two durable pull consumers:

* ``projector-results`` on KANADE_RESULTS (results and EventStarted), keyed by
  ``result_id`` with UPSERTs, so arrival order and redelivery never duplicate or
  lose anything;
* ``projector-execs`` on KANADE_EXECS (``kanade.exec.created.*``), so the
  ``executions`` table can be rebuilt from the stream.

A batch is written in ONE transaction and acked only after the commit. The
database failing naks the batch (redelivered later, never lost); an undecodable
message, or one whose row the database refuses, is logged and acked so poison
never blocks the stream. ``recorded_at`` is the stream's
publish time, so re-projecting a wiped DB reproduces the same rows.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from nats.aio.msg import Msg
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from kanade.backend.messaging.consumers import (
    ConsumerSpec,
    ack_all,
    consume_in_batches,
    ensure_consumer,
    nak_all,
)
from kanade.backend.messaging.live import hub
from kanade.backend.messaging.records import ExecRecord
from kanade.backend.store import writes
from kanade.backend.store.database import Database
from kanade.backend.workers.projection.facts import project_facts, project_facts_for_execs
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.execstatus import TRANSITIONS
from kanade.core.lifecycle import result_expires_at
from kanade.core.models.wire import EventStarted, Result, WireDecodeError, decode

log = structlog.get_logger(__name__)

RESULTS_CONSUMER = ConsumerSpec(
    stream=subjects.STREAM_RESULTS,
    durable="projector-results",
    filter_subjects=(subjects.RESULTS_ALL, subjects.STARTED_ALL),
)
EXECS_CONSUMER = ConsumerSpec(
    stream=subjects.STREAM_EXECS,
    durable="projector-execs",
    # created records, and status records an operator's decision produced
    # (kanade.exec.cancelled.<id>, …): both must survive a rebuild of the DB.
    filter_subjects=(subjects.EXECS_ALL,),
)
CONSUMERS = (RESULTS_CONSUMER, EXECS_CONSUMER)

_STARTED_PREFIX = subjects.started_subject("")
_RESULT_PREFIX = subjects.result_subject("")

# Redelivery delay after a failed commit: long enough not to spin on a broken DB.
NAK_DELAY_S = 2.0

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def recorded_at(msg: Msg) -> datetime:
    """The stream's publish time of ``msg`` (not our clock: replays must reproduce it)."""
    return msg.metadata.timestamp


def started_row(ev: EventStarted, at: datetime) -> dict[str, Any]:
    return {
        "result_id": ev.result_id,
        "exec_id": ev.exec_id,
        "request_id": ev.request_id,
        "pc_id": ev.pc_id,
        "job_id": ev.job_id,
        "version": ev.version,
        "state": "in_flight",
        "exit_code": None,
        "skipped": False,
        "stdout": "",
        "stderr": "",
        "stdout_bytes": 0,
        "stderr_bytes": 0,
        "stdout_ref": None,
        "stderr_ref": None,
        "started_at": ev.started_at,
        "finished_at": None,
        "attempts": 1,
        "note": None,
        "schedule_id": ev.schedule_id,
        "nominal_time": None,
        "recorded_at": at,
        "timeout_s": ev.timeout_s,
        # From the stream time, so a replay reaps at the same instant (SPEC §4.3).
        "expires_at": result_expires_at(at, ev.timeout_s),
    }


def finished_row(res: Result, at: datetime) -> dict[str, Any]:
    return {
        "result_id": res.result_id,
        "exec_id": res.exec_id,
        "request_id": res.request_id,
        "pc_id": res.pc_id,
        "job_id": res.job_id,
        "version": res.version,
        "state": "finished",
        "exit_code": res.exit_code,
        "skipped": res.skipped,
        "stdout": res.stdout,
        "stderr": res.stderr,
        "stdout_bytes": res.stdout_bytes,
        "stderr_bytes": res.stderr_bytes,
        "stdout_ref": res.stdout_ref,
        "stderr_ref": res.stderr_ref,
        "started_at": res.started_at,
        "finished_at": res.finished_at,
        "attempts": res.attempts,
        "note": res.note,
        "schedule_id": res.schedule_id,
        "nominal_time": res.nominal_time,
        "recorded_at": at,
        # Not on the Result: an existing in_flight row keeps the EventStarted's value.
        "timeout_s": None,
        "expires_at": None,
    }


@dataclass(frozen=True)
class Item:
    """One decoded message: the row it writes, and which kind of write."""

    msg: Msg
    row: dict[str, Any]
    started: bool = False
    status_only: bool = False  # an exec status record, not a whole row


def decode_results(msgs: list[Msg]) -> tuple[list[Item], list[Msg]]:
    """Decoded items, and the undecodable messages (poison: logged, to be acked)."""
    items: list[Item] = []
    poison: list[Msg] = []
    for msg in msgs:
        try:
            at = recorded_at(msg)
            if msg.subject.startswith(_STARTED_PREFIX):
                items.append(Item(msg, started_row(decode(EventStarted, msg.data), at), True))
            elif msg.subject.startswith(_RESULT_PREFIX):
                items.append(Item(msg, finished_row(decode(Result, msg.data), at)))
            else:
                raise WireDecodeError(f"unexpected subject {msg.subject}")
        except (WireDecodeError, ValueError) as exc:
            log.warning("poison message skipped", subject=msg.subject, error=str(exc))
            poison.append(msg)
    return items, poison


def decode_exec_records(msgs: list[Msg]) -> tuple[list[Item], list[Msg]]:
    """``kanade.exec.created.<id>`` carries the whole row; any other event
    (``kanade.exec.cancelled.<id>``, …) carries ``{"exec_id", "status"}``."""
    items: list[Item] = []
    poison: list[Msg] = []
    for msg in msgs:
        parts = msg.subject.split(".")
        event = parts[2] if len(parts) == 4 else ""
        try:
            if event == "created":
                items.append(Item(msg, decode(ExecRecord, msg.data).row()))
                continue
            data = json.loads(msg.data)
            status, exec_id = data["status"], data["exec_id"]
            if status not in TRANSITIONS or not isinstance(exec_id, str):
                raise ValueError(f"unknown status {status!r}")
            items.append(Item(msg, {"exec_id": exec_id, "status": status}, status_only=True))
        except (WireDecodeError, ValueError, KeyError, TypeError) as exc:
            log.warning("poison exec record skipped", subject=msg.subject, error=str(exc))
            poison.append(msg)
    return items, poison


def write_results(conn: Connection, items: list[Item], now: datetime) -> None:
    """One transaction: started rows, then results (a result in the same batch as its
    EventStarted completes the row either way), then the affected exec counters."""
    writes.insert_started(conn, [i.row for i in items if i.started])
    writes.upsert_finished(conn, [i.row for i in items if not i.started])
    project_facts(conn, [i.row for i in items if not i.started])
    writes.refresh_exec_counters(conn, {i.row["exec_id"] for i in items}, now)


def write_exec_records(conn: Connection, items: list[Item], now: datetime) -> None:
    created = [i.row for i in items if not i.status_only]
    writes.upsert_executions(conn, created, now)
    project_facts_for_execs(conn, created)
    # Status records come after their exec's creation in the stream; applied through
    # the transition table, so a replay can never walk an exec backwards.
    for item in items:
        if item.status_only:
            writes.apply_exec_status(conn, item.row["exec_id"], item.row["status"], now)


Writer = Callable[..., None]  # (conn, items, now)


def is_transient(exc: BaseException) -> bool:
    """A failure of the database itself (locked, disk full, I/O, schema gone, connection
    lost), as opposed to a row it cannot store. Transient failures are retried forever:
    giving up on them would lose results."""
    return isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


class Projector:
    """Runs both projection consumers against one database."""

    def __init__(
        self,
        bus: Bus,
        db: Database,
        *,
        batch_max: int = 500,
        clock: Clock = utcnow,
        on_projected: Callable[[str, int], None] | None = None,
    ) -> None:
        self._bus = bus
        self._db = db
        self._batch_max = batch_max
        self._clock = clock
        self._on_projected = on_projected

    async def prepare(self, *, reset: bool) -> None:
        """Create the durable consumers (``reset``: replay from the start, for a wiped DB)."""
        for spec in CONSUMERS:
            await ensure_consumer(self._bus.js, spec, reset=reset)

    async def run_results(self) -> None:
        await ensure_consumer(self._bus.js, RESULTS_CONSUMER, reset=False)
        await consume_in_batches(
            self._bus.nc, RESULTS_CONSUMER, self.handle_results, batch_max=self._batch_max
        )

    async def run_execs(self) -> None:
        await ensure_consumer(self._bus.js, EXECS_CONSUMER, reset=False)
        await consume_in_batches(
            self._bus.nc, EXECS_CONSUMER, self.handle_execs, batch_max=self._batch_max
        )

    async def handle_results(self, msgs: list[Msg]) -> None:
        items, poison = decode_results(msgs)
        await ack_all(poison)
        await self._commit("results", items, write_results)

    async def handle_execs(self, msgs: list[Msg]) -> None:
        items, poison = decode_exec_records(msgs)
        await ack_all(poison)
        await self._commit("execs", items, write_exec_records)

    async def _commit(self, kind: str, items: list[Item], write: Writer) -> None:
        """Write ``items`` in one transaction, then ack them; never lose, never block.

        * the database failing (transient): nak the whole batch for redelivery;
        * a row the database refuses (e.g. an integer beyond 64 bits): the batch is
          retried one message per transaction so the good ones still land, and the
          refused one is logged and acked like any other poison message.
        """
        if not items:
            return
        now = self._clock()
        try:
            await self._db.write(lambda conn: write(conn, items, now))
        except Exception as exc:
            if is_transient(exc):
                log.error(
                    "batch not committed; redelivering", kind=kind, size=len(items), error=str(exc)
                )
                await nak_all([i.msg for i in items], NAK_DELAY_S)
                return
            log.warning("batch refused; isolating the bad message", kind=kind, error=str(exc))
            await self._commit_one_by_one(kind, items, write, now)
            return
        await ack_all([i.msg for i in items])
        self._count(kind, len(items))
        hub.publish(kind, {"exec_ids": [i.row["exec_id"] for i in items]})

    async def _commit_one_by_one(
        self, kind: str, items: list[Item], write: Writer, now: datetime
    ) -> None:
        for item in items:
            try:
                await self._db.write(functools.partial(write, items=[item], now=now))
            except Exception as exc:
                if is_transient(exc):
                    await nak_all([item.msg], NAK_DELAY_S)
                    continue
                log.error(
                    "message refused by the database; skipped",
                    kind=kind,
                    subject=item.msg.subject,
                    error=str(exc),
                )
                await ack_all([item.msg])
                continue
            await ack_all([item.msg])
            self._count(kind, 1)
            hub.publish(kind, {"exec_ids": [item.row["exec_id"]]})

    def _count(self, kind: str, n: int) -> None:
        if self._on_projected is not None:
            self._on_projected(kind, n)
