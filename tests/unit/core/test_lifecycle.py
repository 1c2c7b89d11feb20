"""Deadlines of in-flight work (SPEC §4.3), freeze windows (§4.5), facts parsing (§2.1)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kanade.core.facts import check_outcome, inventory_facts
from kanade.core.freeze import FleetFreeze, is_frozen
from kanade.core.lifecycle import (
    END_OF_TIME,
    NO_START_GRACE,
    exec_deadline,
    exec_expires_at,
    exec_is_due,
    fallback_created_cutoff,
    fallback_exec_deadline,
    no_start_due,
    reaped_note,
    result_expires_at,
    result_is_due,
)
from kanade.core.signing import COMMAND_LIFETIME

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("timeout_s", "ttl"),
    [
        (30.0, timedelta(seconds=30 + 120)),  # short: the 2 min floor
        (240.0, timedelta(seconds=240 + 120)),  # exactly where timeout/2 == 2 min
        (600.0, timedelta(seconds=600 + 300)),  # long: half the timeout
        (0.0, timedelta(minutes=2)),
        (None, timedelta(hours=24)),  # unknown
        (-5.0, timedelta(hours=24)),  # nonsense is unknown, not "already due"
        (math.nan, timedelta(hours=24)),
    ],
)
def test_result_expiry(timeout_s: float | None, ttl: timedelta) -> None:
    assert result_expires_at(T0, timeout_s) == T0 + ttl


@pytest.mark.parametrize("timeout_s", [1e300, math.inf, 1e18])
def test_result_expiry_clamps_instead_of_overflowing(timeout_s: float) -> None:
    assert result_expires_at(T0, timeout_s) == END_OF_TIME
    assert result_expires_at(END_OF_TIME - timedelta(seconds=1), 30.0) == END_OF_TIME


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
    ),
    st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
)
def test_result_expiry_is_total_and_never_before_recorded(
    recorded: datetime, timeout_s: float | None
) -> None:
    expires = result_expires_at(recorded, timeout_s)
    assert recorded <= expires <= END_OF_TIME


def test_deadlines_are_inclusive_to_the_microsecond() -> None:
    expires = result_expires_at(T0, 30.0)
    assert not result_is_due(expires, expires - timedelta(microseconds=1))
    assert result_is_due(expires, expires)
    created = T0
    assert exec_expires_at(created) == T0 + timedelta(hours=1)
    assert not exec_is_due("pending", created, T0 + timedelta(hours=1) - timedelta(microseconds=1))
    assert exec_is_due("pending", created, T0 + timedelta(hours=1))
    assert not exec_is_due("running", created, T0 + timedelta(days=1))


def test_reaped_note_is_deterministic() -> None:
    note = reaped_note(T0, 30.0)
    assert note == reaped_note(T0, 30.0)
    assert "2026-03-01T12:00:00Z" in note and "30s" in note


# --- freeze ---------------------------------------------------------------------------


def freeze(start: datetime | None, end: datetime | None) -> FleetFreeze:
    return FleetFreeze(from_=start, until=end, by="alice", reason="r", set_at=T0)


def test_freeze_window_is_half_open() -> None:
    f = freeze(T0, T0 + timedelta(hours=1))
    assert not is_frozen(f, T0 - timedelta(microseconds=1))
    assert is_frozen(f, T0)
    assert is_frozen(f, T0 + timedelta(minutes=59))
    assert not is_frozen(f, T0 + timedelta(hours=1))


def test_open_ended_freezes_and_no_freeze() -> None:
    assert not is_frozen(None, T0)
    assert is_frozen(freeze(None, None), T0)
    assert is_frozen(freeze(None, T0 + timedelta(seconds=1)), T0)
    assert not is_frozen(freeze(T0 + timedelta(seconds=1), None), T0)


def test_freeze_wire_form_uses_from() -> None:
    f = freeze(T0, None)
    d = f.to_dict()
    assert d["from"] == "2026-03-01T12:00:00Z" and d["until"] is None
    assert FleetFreeze.model_validate(d) == f


# --- facts ----------------------------------------------------------------------------


def test_inventory_facts_only_from_a_clean_json_object() -> None:
    assert inventory_facts(exit_code=0, skipped=False, stdout=' {"cpu": 4}\n') == {"cpu": 4}
    assert inventory_facts(exit_code=1, skipped=False, stdout='{"cpu": 4}') is None
    assert inventory_facts(exit_code=0, skipped=True, stdout='{"cpu": 4}') is None
    assert inventory_facts(exit_code=0, skipped=False, stdout="[1, 2]") is None
    assert inventory_facts(exit_code=0, skipped=False, stdout='{"cpu": 4') is None  # truncated
    assert inventory_facts(exit_code=0, skipped=False, stdout='{"a":1}\n{"b":2}') is None


def test_check_outcomes() -> None:
    ok = check_outcome(exit_code=0, skipped=False, stdout='{"status": "OK", "detail": "fine"}')
    assert ok is not None and (ok.status, ok.detail) == ("ok", "fine")
    custom = check_outcome(
        exit_code=2,
        skipped=False,
        stdout='{"state": "fail", "why": {"disk": 99}}',
        status_field="state",
        detail_field="why",
    )
    assert custom is not None and custom.status == "fail" and '"disk": 99' in custom.detail
    text = check_outcome(exit_code=0, skipped=False, stdout="warn 91% used\n")
    assert text is not None and (text.status, text.detail) == ("warn", "91% used")
    bad = check_outcome(exit_code=0, skipped=False, stdout='{"status": "great"}')
    assert bad is not None and bad.status == "unknown" and "great" in bad.detail
    crash = check_outcome(exit_code=3, skipped=False, stdout="Traceback ...")
    assert crash is not None and crash.status == "unknown" and "exit 3" in crash.detail
    assert check_outcome(exit_code=126, skipped=True, stdout="") is None


@given(st.text(max_size=300), st.integers(-1, 255) | st.none(), st.booleans())
def test_facts_parsers_never_raise(stdout: str, code: int | None, skipped: bool) -> None:
    inventory_facts(exit_code=code, skipped=skipped, stdout=stdout)
    out = check_outcome(exit_code=code, skipped=skipped, stdout=stdout)
    assert out is None or out.status in ("ok", "warn", "fail", "unknown")


# --- the exec's deadline (every exec ends, §4.3) -------------------------------------------
def test_an_exec_deadline_is_its_starting_deadline_or_its_expiry_whichever_first() -> None:
    expiry = T0 + timedelta(days=7)
    assert exec_deadline(T0, expires_at=expiry, deadline_at=None) == expiry
    soon = T0 + timedelta(seconds=30)
    assert exec_deadline(T0, expires_at=expiry, deadline_at=soon) == soon
    late = T0 + timedelta(days=9)
    assert exec_deadline(T0, expires_at=expiry, deadline_at=late) == expiry
    # A command without a signed expiry lives the command lifetime.
    assert exec_deadline(T0, expires_at=None, deadline_at=None) == T0 + COMMAND_LIFETIME


def test_a_row_without_a_deadline_falls_back_to_the_command_lifetime() -> None:
    assert fallback_exec_deadline(T0) == T0 + COMMAND_LIFETIME
    assert fallback_created_cutoff(T0 + COMMAND_LIFETIME) == T0
    assert fallback_exec_deadline(END_OF_TIME) == END_OF_TIME  # clamped, never raises


def test_unstarted_pcs_are_due_a_grace_after_the_deadline() -> None:
    assert no_start_due(T0) == T0 + NO_START_GRACE
    assert no_start_due(T0, timedelta(0)) == T0
    assert no_start_due(T0, timedelta(seconds=-5)) == T0  # a negative grace is none
    assert no_start_due(END_OF_TIME, timedelta(days=1)) == END_OF_TIME
