"""Projection of the result plane and execution records into SQL (SPEC §4.2).

Two durable pull consumers:

* ``projector-results`` on KANADE_RESULTS (results and EventStarted), keyed by
  ``result_id`` with UPSERTs, so arrival order and redelivery never duplicate or
  lose anything;
* ``projector-execs`` on KANADE_EXECS (``kanade.exec.created.*``), so the
  ``executions`` table can be rebuilt from the stream.

A batch is written in ONE transaction and acked only after the commit. A DB
error naks the batch (redelivered later); an undecodable message is logged and
acked so poison never blocks the stream. ``recorded_at`` is the stream's
publish time, so re-projecting a wiped DB reproduces the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from nats.aio.msg import Msg
from sqlalchemy.engine import Connection

from kanade.backend.consumers import (
    ConsumerSpec,
    ack_all,
    consume_in_batches,
    ensure_consumer,
    nak_all,
)
from kanade.backend.db import writes
from kanade.backend.db.database import Database
from kanade.backend.records import ExecRecord
from kanade.bus.connection import Bus
from kanade.core import subjects
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
    filter_subjects=(subjects.exec_subject("created", "*"),),
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
    }


@dataclass
class ResultsBatch:
    started: list[dict[str, Any]] = field(default_factory=list)
    finished: list[dict[str, Any]] = field(default_factory=list)
    poison: list[Msg] = field(default_factory=list)

    @property
    def exec_ids(self) -> set[str]:
        return {r["exec_id"] for r in self.started} | {r["exec_id"] for r in self.finished}


def decode_results(msgs: list[Msg]) -> ResultsBatch:
    batch = ResultsBatch()
    for msg in msgs:
        try:
            at = recorded_at(msg)
            if msg.subject.startswith(_STARTED_PREFIX):
                batch.started.append(started_row(decode(EventStarted, msg.data), at))
            elif msg.subject.startswith(_RESULT_PREFIX):
                batch.finished.append(finished_row(decode(Result, msg.data), at))
            else:
                raise WireDecodeError(f"unexpected subject {msg.subject}")
        except (WireDecodeError, ValueError) as exc:
            log.warning("poison message skipped", subject=msg.subject, error=str(exc))
            batch.poison.append(msg)
    return batch


def write_results(conn: Connection, batch: ResultsBatch, now: datetime) -> None:
    """One transaction: started rows, then results (a result in the same batch as its
    EventStarted completes the row either way), then the affected exec counters."""
    writes.insert_started(conn, batch.started)
    writes.upsert_finished(conn, batch.finished)
    writes.refresh_exec_counters(conn, batch.exec_ids, now)


def write_exec_records(conn: Connection, records: list[ExecRecord], now: datetime) -> None:
    writes.upsert_executions(conn, [r.row() for r in records], now)


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
        batch = decode_results(msgs)
        poison = {id(m) for m in batch.poison}
        good = [m for m in msgs if id(m) not in poison]
        await ack_all(batch.poison)
        if not good:
            return
        now = self._clock()
        try:
            await self._db.write(lambda conn: write_results(conn, batch, now))
        except Exception:
            log.exception("results batch not committed; redelivering", size=len(good))
            await nak_all(good, NAK_DELAY_S)
            return
        await ack_all(good)
        self._count("results", len(good))

    async def handle_execs(self, msgs: list[Msg]) -> None:
        records: list[ExecRecord] = []
        good: list[Msg] = []
        for msg in msgs:
            try:
                records.append(decode(ExecRecord, msg.data))
                good.append(msg)
            except WireDecodeError as exc:
                log.warning("poison exec record skipped", subject=msg.subject, error=str(exc))
                await ack_all([msg])
        if not good:
            return
        now = self._clock()
        try:
            await self._db.write(lambda conn: write_exec_records(conn, records, now))
        except Exception:
            log.exception("exec records not committed; redelivering", size=len(good))
            await nak_all(good, NAK_DELAY_S)
            return
        await ack_all(good)
        self._count("execs", len(good))

    def _count(self, kind: str, n: int) -> None:
        if self._on_projected is not None:
            self._on_projected(kind, n)
