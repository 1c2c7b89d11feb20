"""The scheduler's KV values (kanade.core.models.schedstate): exact bytes, tolerant reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from kanade.core.models.schedstate import (
    LeaseRecord,
    decode_mark,
    decode_tick,
    encode_mark,
    encode_tick,
)
from kanade.core.scheduling import DispatchMark

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_tick_bytes_and_round_trip() -> None:
    assert encode_tick(T) == b'{"last_tick": "2026-03-01T12:00:00Z"}'
    assert decode_tick(encode_tick(T)) == T
    plus_one = timezone(timedelta(hours=1))
    assert decode_tick(b'{"last_tick": "2026-03-01T13:00:00+01:00"}') == T.astimezone(plus_one)


def test_unreadable_ticks_are_none() -> None:
    for raw in (
        b"",
        b"[]",
        b'{"x": 1}',
        b'{"last_tick": "soon"}',
        b'{"last_tick": "2026-03-01T12:00"}',
    ):
        assert decode_tick(raw) is None


def test_mark_bytes_and_round_trip() -> None:
    mark = DispatchMark("pc1", T, T + timedelta(minutes=5), "occ")
    want = {
        "pc_id": "pc1",
        "dispatched_at": "2026-03-01T12:00:00Z",
        "until": "2026-03-01T12:05:00Z",
        "occurrence_id": "occ",
    }
    assert encode_mark(mark) == json.dumps(want).encode()
    assert decode_mark(encode_mark(mark)) == mark


def test_unreadable_marks_are_none() -> None:
    naive = b'{"pc_id": "a", "dispatched_at": "2026-03-01T12:00", "until": "2026-03-01T13:00Z"}'
    for raw in (b"{", b"{}", naive):
        assert decode_mark(raw) is None


def test_lease_bytes_and_tolerant_read() -> None:
    lease = LeaseRecord(holder="b1", acquired_at=T, renewed_at=T, ttl_s=15.0)
    want = {
        "holder": "b1",
        "acquired_at": "2026-03-01T12:00:00Z",
        "renewed_at": "2026-03-01T12:00:00Z",
        "ttl_s": 15.0,
    }
    assert lease.encode() == json.dumps(want).encode()
    assert LeaseRecord.decode(lease.encode()).holder == "b1"
    for raw in (None, b"", b"nope", b"[1]", b"{}"):
        assert LeaseRecord.decode(raw).holder == ""
