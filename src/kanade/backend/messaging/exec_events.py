"""Messages published after an exec was created: the commands of a deferred dispatch (an
approved exec, a rollout wave), exec status records of an operator's decision, and audit
records of steps that may repeat — each with a deterministic ``Nats-Msg-Id``, so a repeat
within the stream's duplicate window is dropped by the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import structlog

from kanade.backend.messaging.audit import audit_record
from kanade.bus.connection import Bus
from kanade.bus.publish import Outgoing, publish_one
from kanade.core import subjects
from kanade.core.models.records import ExecStatusRecord
from kanade.core.models.wire import encode
from kanade.core.msgids import command_msg_id

log = structlog.get_logger(__name__)

# Concurrent command publishes (each waits for its JetStream ack): a target listing
# hundreds of pcs is published in a few round trips, not hundreds.
PUBLISH_CONCURRENCY: Final = 128


async def publish_all(bus: Bus, messages: Sequence[Outgoing]) -> None:
    """Publish every message, at most :data:`PUBLISH_CONCURRENCY` awaiting their ack at once;
    raises the first failure (the msg ids make the caller's retry harmless)."""
    gate = asyncio.Semaphore(PUBLISH_CONCURRENCY)

    async def one(msg: Outgoing) -> None:
        async with gate:
            await publish_one(bus, msg)

    await asyncio.gather(*(one(m) for m in messages))


async def publish_exact(bus: Bus, raw: bytes, request_id: str, subs: list[str]) -> None:
    """Publish the same bytes to each subject with ``Nats-Msg-Id = <request_id>:<subject>``
    (the exec service's scheme), so a repeat within the duplicate window is dropped."""
    await publish_all(bus, [Outgoing(s, raw, command_msg_id(request_id, s)) for s in subs])


async def publish_exec_status(
    bus: Bus,
    exec_id: str,
    status: str,
    actor: str,
    at: datetime,
    deadline_at: datetime | None = None,
) -> None:
    """An exec status record on KANADE_EXECS (``kanade.exec.<event>.<exec_id>``), which the
    projector applies through the transition table: an operator's decision (approved →
    pending, rejected, cancelled by an abort) survives a rebuild of the database, and so
    does the deadline an approval gave the exec (``deadline_at``)."""
    record = ExecStatusRecord(
        exec_id=exec_id, status=status, at=at, by=actor, deadline_at=deadline_at
    )
    try:
        await bus.publish_js(record.subject(), record.encode(), msg_id=record.msg_id())
    except Exception as exc:
        log.error("exec status record not written", exec_id=exec_id, status=status, error=str(exc))


async def publish_audit_once(
    bus: Bus, action: str, actor: str, details: dict[str, Any], msg_id: str, at: datetime
) -> None:
    """An audit record with a deterministic msg id (a repeated step is recorded once)."""
    record = audit_record(action, actor, at, details)
    try:
        await bus.publish_js(subjects.audit_subject(action), encode(record), msg_id=msg_id)
    except Exception as exc:
        log.error("audit record not written", action=action, error=str(exc))
