"""The one freeze model: window, stored record, and the KV value reader."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from kanade.core import freeze as core_freeze
from kanade.core.freeze import (
    UNREADABLE_REASON,
    FleetFreeze,
    Freeze,
    decode_fleet_freeze,
    decode_freeze,
    freeze_from_json,
    is_frozen,
)
from kanade.core.scheduling import Freeze as SchedulingFreeze
from kanade.core.scheduling import freeze_from_json as scheduling_freeze_from_json

T = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_one_model_behind_both_import_paths() -> None:
    assert SchedulingFreeze is Freeze and scheduling_freeze_from_json is freeze_from_json


def test_record_and_window_agree() -> None:
    record = FleetFreeze(from_=T, until=T + timedelta(hours=1), by="a", set_at=T)
    assert record.window == Freeze(T, T + timedelta(hours=1))
    for moment in (T - timedelta(seconds=1), T, T + timedelta(hours=1)):
        assert is_frozen(record, moment) == is_frozen(record.window, moment)


def test_record_bounds_use_the_one_parser() -> None:
    record = FleetFreeze.model_validate(
        {"from": "2026-03-01 13:00+01:00", "until": None, "set_at": "2026-03-01T12:00:00Z"}
    )
    assert record.from_ == T and record.from_.tzinfo is UTC
    assert record.to_dict()["from"] == "2026-03-01T12:00:00Z"
    with pytest.raises(ValueError):
        FleetFreeze.model_validate({"from": "yesterday", "set_at": "2026-03-01T12:00:00Z"})


def test_decode_freeze() -> None:
    seen: list[Exception] = []
    assert decode_freeze(None) is None and decode_freeze(b"  ") is None
    raw = json.dumps({"from": "2026-03-01T12:00:00Z", "by": "a"}).encode()
    assert decode_freeze(raw, seen.append) == Freeze(T, None) and not seen
    for bad in (b"[1]", b"{", b'{"from": "soon"}'):
        assert decode_freeze(bad, seen.append) == Freeze()  # unreadable: frozen
    assert len(seen) == 3


def test_decode_fleet_freeze() -> None:
    seen: list[Exception] = []
    assert decode_fleet_freeze(b"") is None
    stored = FleetFreeze(from_=T, by="a", reason="r", set_at=T)
    raw = json.dumps(stored.to_dict(), sort_keys=True).encode()
    assert decode_fleet_freeze(raw) == stored
    damaged = decode_fleet_freeze(b"not json", seen.append)
    assert damaged is not None and damaged.reason == UNREADABLE_REASON and len(seen) == 1
    assert is_frozen(damaged, T)
    assert core_freeze.unreadable_freeze() == damaged
