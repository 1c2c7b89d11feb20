"""The central scheduler's records in KV bucket ``kanade_dispatch`` (values only; keys and
I/O are the scheduler's):

* :class:`TickRecord` — ``tick.<schedule_id>``: ``{"last_tick": iso}``, the ``now`` of the
  schedule's last decision;
* :class:`MarkRecord` — ``mark.<schedule_id>.<pc_id>``: a
  :class:`~kanade.core.scheduling.DispatchMark` (a reconcile poll dispatched the pc);
* :class:`LeaseRecord` — ``scheduler.lease``: which backend runs the scheduler.

The encoders keep the exact bytes these values always had; the decoders return None for a
value they cannot read (the scheduler then decides afresh).
"""

from __future__ import annotations

import json
from datetime import datetime

from kanade.core.bounds import loads as json_loads
from kanade.core.instants import format_instant, parse_instant
from kanade.core.models.base import WireModel
from kanade.core.scheduling.dedup import DispatchMark


class TickRecord(WireModel):
    last_tick: datetime

    def encode(self) -> bytes:
        return json.dumps({"last_tick": format_instant(self.last_tick)}).encode()


class MarkRecord(WireModel):
    pc_id: str
    dispatched_at: datetime
    until: datetime
    occurrence_id: str | None = None

    @classmethod
    def of(cls, mark: DispatchMark) -> MarkRecord:
        return cls(
            pc_id=mark.pc_id,
            dispatched_at=mark.dispatched_at,
            until=mark.until,
            occurrence_id=mark.occurrence_id,
        )

    def mark(self) -> DispatchMark:
        return DispatchMark(self.pc_id, self.dispatched_at, self.until, self.occurrence_id)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "pc_id": self.pc_id,
                "dispatched_at": format_instant(self.dispatched_at),
                "until": format_instant(self.until),
                "occurrence_id": self.occurrence_id,
            }
        ).encode()


MAX_HOLDER_CHARS = 256
"""A lease holder id (``host:pid:random``) is far shorter."""


class LeaseRecord(WireModel):
    """The scheduler lease's value; only ``holder`` is read back, the rest is for people."""

    holder: str = ""
    acquired_at: datetime | None = None
    renewed_at: datetime | None = None
    ttl_s: float | None = None

    def encode(self) -> bytes:
        return json.dumps(
            {
                "holder": self.holder,
                "acquired_at": None
                if self.acquired_at is None
                else format_instant(self.acquired_at),
                "renewed_at": None if self.renewed_at is None else format_instant(self.renewed_at),
                "ttl_s": self.ttl_s,
            }
        ).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> LeaseRecord:
        """Tolerant: an empty or unreadable value is a lease nobody holds."""
        try:
            data = json_loads(raw or b"{}")
        except ValueError:
            return cls()
        if not isinstance(data, dict):
            return cls()
        holder = data.get("holder", "")
        if not isinstance(holder, str) or len(holder) > MAX_HOLDER_CHARS:
            return cls()  # not a holder this code wrote: nobody's (and never logged whole)
        return cls(holder=holder)


def encode_tick(moment: datetime) -> bytes:
    return TickRecord(last_tick=moment).encode()


def decode_tick(raw: bytes) -> datetime | None:
    """The stored ``last_tick``; None when unreadable or without an offset."""
    try:
        return parse_instant(str(json_loads(raw)["last_tick"]), require_offset=True)
    except (ValueError, KeyError, TypeError):
        return None


def encode_mark(mark: DispatchMark) -> bytes:
    return MarkRecord.of(mark).encode()


def decode_mark(raw: bytes) -> DispatchMark | None:
    """The stored mark; None when unreadable (bad JSON, missing field, naive instant)."""
    try:
        data = json_loads(raw)
        return DispatchMark(
            pc_id=str(data["pc_id"]),
            dispatched_at=parse_instant(str(data["dispatched_at"]), require_offset=True),
            until=parse_instant(str(data["until"]), require_offset=True),
            occurrence_id=data.get("occurrence_id"),
        )
    except (ValueError, KeyError, TypeError):
        return None


__all__ = [
    "LeaseRecord",
    "MarkRecord",
    "TickRecord",
    "decode_mark",
    "decode_tick",
    "encode_mark",
    "encode_tick",
]
