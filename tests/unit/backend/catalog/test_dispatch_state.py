"""The keys of the scheduler's state in ``kanade_dispatch`` (the values' codecs are core's:
tests/unit/core/test_schedstate.py)."""

from __future__ import annotations

from kanade.backend.catalog import dispatch_state as state


def test_keys() -> None:
    assert state.mark_key("s", "pc-1") == "mark.s.pc-1"
    assert state.tick_key("s") == "tick.s"
