"""Killing an exec (SPEC §4.5): mark it cancelled, end its running scripts, and delete
the copies still queued for offline agents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from nats.js.errors import NotFoundError as JsNotFoundError
from sqlalchemy.engine import Connection

from kanade.backend.errors import NotFound
from kanade.backend.messaging.audit import publish_audit
from kanade.backend.services.base import Service
from kanade.backend.store import executions, unstarted
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.models.records import ExecStatusRecord, KillRequest
from kanade.core.models.target import Target
from kanade.core.models.wire import Command, WireDecodeError, decode
from kanade.core.statuses import ExecStatus, can_transition
from kanade.core.targeting import command_subjects

log = structlog.get_logger(__name__)


class KillService(Service):
    async def kill(self, exec_id: str, *, actor: str) -> dict[str, Any]:
        """End the exec's running scripts and cancel its queued copies (SPEC §4.5).

        1. the exec becomes ``cancelled`` where the transition table allows it — first,
           so the killed results (which may be projected within milliseconds) find it
           already in a state they cannot move it out of; a ``kanade.exec.cancelled``
           record keeps the operator's decision in KANADE_EXECS;
        2. a core-NATS kill broadcast: agents end the running tree (exit -1) and skip
           copies queued in their local limiter;
        3. copies still waiting in the command stream for offline agents are deleted:
           the stream keeps one message per subject, so for each subject the exec
           published to, the last message is this exec's iff its exec_id matches.
        """
        row = await self._db.read(lambda conn: executions.get_execution(conn, exec_id))
        if row is None:
            raise NotFound(f"execution {exec_id!r} not found", exec_id=exec_id)
        bus = self._bus()
        now = self._clock()
        previous = str(row["status"])
        status = await self._mark_cancelled(exec_id, previous, now, actor)
        if status == ExecStatus.CANCELLED:
            record = ExecStatusRecord(exec_id=exec_id, status=status, at=now, by=actor)
            try:
                await bus.publish_js(record.subject(), record.encode(), msg_id=record.msg_id())
            except Exception:
                log.exception("cancel record not written", exec_id=exec_id)

        await bus.nc.publish(subjects.KILL_SUBJECT, KillRequest(exec_id=exec_id).encode())
        await bus.nc.flush(timeout=5)

        target = Target.model_validate(row["target"])
        cancelled: list[str] = []
        for subject in command_subjects(target, str(row["job_id"])):
            if await self._cancel_queued(bus, subject, exec_id, row.get("request_id")):
                cancelled.append(subject)
        await publish_audit(
            self._bus,
            "kill",
            actor,
            {"exec_id": exec_id, "job_id": row["job_id"], "cancelled_queued": cancelled},
            at=self._clock(),
        )
        log.info(
            "exec killed",
            exec_id=exec_id,
            actor=actor,
            cancelled_queued=len(cancelled),
            status=status,
        )
        return {
            "exec_id": exec_id,
            "job_id": row["job_id"],
            "previous_status": previous,
            "status": status,
            "kill_sent": True,
            "cancelled_queued": len(cancelled),
            "cancelled_subjects": cancelled,
        }

    async def _mark_cancelled(self, exec_id: str, current: str, now: datetime, actor: str) -> str:
        """Move the exec to ``cancelled`` if the table allows it; the status it has after."""
        if current == ExecStatus.CANCELLED:
            return current
        if not can_transition(current, ExecStatus.CANCELLED):
            return current
        def cancel(conn: Connection) -> bool:
            if not executions.set_exec_status(conn, exec_id, ExecStatus.CANCELLED, now, by=actor):
                return False
            # Its queued copies are deleted below: a pc that has not started it never will
            # and says so at once as no_result (a killed script still reports -1).
            unstarted.close_exec(conn, exec_id, now)
            return True

        if await self._db.write(cancel):
            return ExecStatus.CANCELLED
        # It moved on meanwhile (e.g. completed): report what it is now.
        fresh = await self._db.read(lambda conn: executions.get_execution(conn, exec_id))
        return str(fresh["status"]) if fresh else current

    async def _cancel_queued(
        self, bus: Bus, subject: str, exec_id: str, request_id: str | None
    ) -> bool:
        try:
            msg = await bus.js.get_last_msg(subjects.STREAM_COMMANDS, subject)
        except JsNotFoundError:
            return False  # nothing queued (never published, expired, or already deleted)
        try:
            cmd = decode(Command, msg.data or b"")
        except WireDecodeError:
            return False
        if cmd.exec_id != exec_id and (request_id is None or cmd.request_id != request_id):
            return False  # a newer exec of the same job superseded ours: not ours to cancel
        if msg.seq is None:
            return False
        try:
            return bool(await bus.js.delete_msg(subjects.STREAM_COMMANDS, msg.seq))
        except JsNotFoundError:
            return False
