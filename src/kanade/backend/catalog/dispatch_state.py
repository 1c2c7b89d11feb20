"""The central scheduler's state in KV bucket ``kanade_dispatch`` (plain KV reads, writes
and codecs, shared by the scheduler and the schedules API).

* ``scheduler.lease`` — who runs the scheduler
  (:mod:`kanade.backend.workers.scheduler.lease`);
* ``tick.<schedule_id>`` — ``{"last_tick": iso}``: the ``now`` of the schedule's last
  decision (:func:`kanade.core.scheduling.decide_tick`), so a backend that was down across
  a fire time applies ``catchup`` on restart; written after the tick's dispatches, so a
  crash in between re-decides the same occurrence (and occurrence identity drops it);
* ``mark.<schedule_id>.<pc_id>`` — a :class:`~kanade.core.scheduling.DispatchMark`: the pc
  was dispatched by a reconcile poll and must not be fired again before it could report.

KV, not SQL: every replica sees the same state, and it survives a wiped database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

import structlog
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from kanade.bus.connection import Bus
from kanade.bus.kv import kv_subject
from kanade.bus.kvsnapshot import kv_snapshot
from kanade.bus.publish import Outgoing, send_pipelined, settle
from kanade.core import subjects
from kanade.core.models.schedstate import decode_mark, decode_tick, encode_tick
from kanade.core.scheduling import DispatchMark

log = structlog.get_logger(__name__)

LEASE_KEY: Final = "scheduler.lease"
TICK_PREFIX: Final = "tick."
MARK_PREFIX: Final = "mark."


def tick_key(schedule_id: str) -> str:
    return TICK_PREFIX + schedule_id


def mark_key(schedule_id: str, pc_id: str) -> str:
    return f"{MARK_PREFIX}{schedule_id}.{pc_id}"


async def get_tick(kv: KeyValue, schedule_id: str) -> datetime | None:
    try:
        entry = await kv.get(tick_key(schedule_id))
    except KeyNotFoundError:
        return None
    return None if entry.value is None else decode_tick(entry.value)


async def put_tick(kv: KeyValue, schedule_id: str, moment: datetime) -> None:
    await kv.put(tick_key(schedule_id), encode_tick(moment))


def tick_subject(schedule_id: str) -> str:
    """The subject a KV put of ``tick.<schedule_id>`` is published on (what
    ``KeyValue.put`` does), for writing many ticks pipelined."""
    return kv_subject(subjects.KV_DISPATCH, tick_key(schedule_id))


async def put_ticks(bus: Bus, ticks: Sequence[tuple[str, datetime]]) -> list[BaseException | None]:
    """Store many ``last_tick``s at once (pipelined, one ack wait for all); per tick None
    when stored, else the error (the caller retries it with :func:`put_tick`)."""
    messages = [Outgoing(tick_subject(sid), encode_tick(moment), None) for sid, moment in ticks]
    return await settle(await send_pipelined(bus, messages))


async def load_ticks(bus: Bus) -> dict[str, datetime]:
    out: dict[str, datetime] = {}
    ticks = await kv_snapshot(bus.js, subjects.KV_DISPATCH, TICK_PREFIX + "*")
    for key, (raw, _) in ticks.items():
        moment = decode_tick(raw)
        if moment is not None:
            out[key[len(TICK_PREFIX) :]] = moment
    return out


async def load_marks(
    bus: Bus, schedule_id: str | None = None
) -> dict[str, dict[str, DispatchMark]]:
    """``{schedule_id: {pc_id: mark}}`` (only ``schedule_id``'s when given)."""
    key_filter = MARK_PREFIX + (">" if schedule_id is None else f"{schedule_id}.*")
    out: dict[str, dict[str, DispatchMark]] = {}
    for key, (raw, _) in (await kv_snapshot(bus.js, subjects.KV_DISPATCH, key_filter)).items():
        sid, _, _pc = key[len(MARK_PREFIX) :].partition(".")
        mark = decode_mark(raw)
        if mark is not None:
            out.setdefault(sid, {})[mark.pc_id] = mark
    return out


