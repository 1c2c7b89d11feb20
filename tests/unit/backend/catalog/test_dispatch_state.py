"""The KV codecs and keys of the scheduler's state in ``kanade_dispatch``: ticks and
dispatch marks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kanade.backend.catalog import dispatch_state as state
from kanade.core.scheduling import DispatchMark, occurrence_id

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_tick_and_mark_codecs() -> None:
    assert state.decode_tick(state.encode_tick(T0)) == T0
    assert state.decode_tick(b"garbage") is None
    assert state.decode_tick(b'{"last_tick": "2026-03-01T12:00:00"}') is None  # naive: refused
    mark = DispatchMark("pc-1", T0, T0 + timedelta(minutes=2), occurrence_id("s", T0))
    assert state.decode_mark(state.encode_mark(mark)) == mark
    assert state.decode_mark(b"{}") is None
    assert state.mark_key("s", "pc-1") == "mark.s.pc-1"
    assert state.tick_key("s") == "tick.s"
