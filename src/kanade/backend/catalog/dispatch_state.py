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

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import structlog
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from kanade.backend.catalog.freeze import get_freeze
from kanade.bus.connection import Bus
from kanade.bus.kvsnapshot import kv_snapshot
from kanade.bus.publish import Outgoing, send_pipelined, settle
from kanade.core import subjects
from kanade.core.scheduling import DispatchMark, Freeze

log = structlog.get_logger(__name__)

LEASE_KEY: Final = "scheduler.lease"
TICK_PREFIX: Final = "tick."
MARK_PREFIX: Final = "mark."


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def tick_key(schedule_id: str) -> str:
    return TICK_PREFIX + schedule_id


def mark_key(schedule_id: str, pc_id: str) -> str:
    return f"{MARK_PREFIX}{schedule_id}.{pc_id}"


def encode_tick(moment: datetime) -> bytes:
    return json.dumps({"last_tick": _iso(moment)}).encode()


def decode_tick(raw: bytes) -> datetime | None:
    try:
        value = json.loads(raw)["last_tick"]
        moment = datetime.fromisoformat(str(value))
    except (ValueError, KeyError, TypeError):
        return None
    return moment if moment.tzinfo is not None else None


def encode_mark(mark: DispatchMark) -> bytes:
    return json.dumps(
        {
            "pc_id": mark.pc_id,
            "dispatched_at": _iso(mark.dispatched_at),
            "until": _iso(mark.until),
            "occurrence_id": mark.occurrence_id,
        }
    ).encode()


def decode_mark(raw: bytes) -> DispatchMark | None:
    try:
        data = json.loads(raw)
        return DispatchMark(
            pc_id=str(data["pc_id"]),
            dispatched_at=datetime.fromisoformat(str(data["dispatched_at"])),
            until=datetime.fromisoformat(str(data["until"])),
            occurrence_id=data.get("occurrence_id"),
        )
    except (ValueError, KeyError, TypeError):
        return None


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
    return f"$KV.{subjects.KV_DISPATCH}.{tick_key(schedule_id)}"


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


async def read_freeze(bus: Bus) -> Freeze | None:
    """The fleet freeze as the scheduling core's :class:`Freeze` (one reader of the KV
    record, :func:`kanade.backend.catalog.freeze.get_freeze`; unreadable reads as frozen)."""
    record = await get_freeze(bus)
    return None if record is None else Freeze(record.from_, record.until)
