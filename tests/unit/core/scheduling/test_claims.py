"""The agent's in-flight claims (SPEC §3.6) and its last-success ledger codec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kanade.core.scheduling import (
    Claim,
    ClaimTable,
    claim_until,
    counts_as_success,
    decode_successes,
    encode_successes,
)

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def until(now: datetime) -> datetime:
    return claim_until(now, timedelta(seconds=10), timedelta(seconds=60), 2, timedelta(seconds=5))


def test_claim_until_formula() -> None:
    # now + jitter + timeout + retry.max x (timeout + backoff) + 60 s
    assert until(T0) == T0 + timedelta(seconds=10 + 60 + 2 * 65 + 60)
    assert claim_until(T0, timedelta(0), timedelta(seconds=1), 0, timedelta(0)) == T0 + 61 * S


def test_two_concurrent_ticks_one_fire() -> None:
    table = ClaimTable()
    first = table.try_claim("s1", "occ-1", now=T0, until=until(T0))
    second = table.try_claim("s1", "occ-2", now=T0 + S, until=until(T0 + S))
    assert first.granted and first.status == "claimed" and first.warning is None
    assert not second.granted and second.status == "busy"
    assert second.claim.owner == "occ-1"
    # the same owner twice is a duplicate, not a second run
    assert not table.try_claim("s1", "occ-1", now=T0 + S, until=until(T0 + S)).granted
    # other schedules are independent
    assert table.try_claim("s2", "occ-x", now=T0, until=until(T0)).granted
    assert len(table) == 2


def test_stale_claim_is_taken_over_with_a_warning() -> None:
    table = ClaimTable()
    old = table.try_claim("s1", "occ-1", now=T0, until=until(T0)).claim
    just_before = table.try_claim(
        "s1", "occ-2", now=old.until - timedelta(microseconds=1), until=until(old.until)
    )
    assert not just_before.granted
    took = table.try_claim("s1", "occ-2", now=old.until, until=until(old.until))
    assert took.granted and took.status == "taken_over"
    assert took.previous == old
    assert (
        took.warning is not None
        and "occ-1" in took.warning
        and "taken over by occ-2" in took.warning
    )
    assert table.get("s1") == took.claim


def test_late_finisher_does_not_clear_new_owners_claim() -> None:
    table = ClaimTable()
    old = table.try_claim("s1", "occ-1", now=T0, until=until(T0)).claim
    new = table.try_claim("s1", "occ-2", now=old.until, until=until(old.until)).claim
    late = table.finish("s1", "occ-1", ran=True, exit_code=0)
    assert not late.released
    assert late.record_success  # it did run and exit 0: that is a real success
    assert table.get("s1") == new
    mine = table.finish("s1", "occ-2", ran=True, exit_code=1)
    assert mine.released and not mine.record_success
    assert table.get("s1") is None
    # after release, the next tick claims afresh
    assert (
        table.try_claim("s1", "occ-3", now=old.until + S, until=until(old.until + S)).status
        == "claimed"
    )


@pytest.mark.parametrize(
    ("ran", "exit_code", "skipped", "success"),
    [
        (True, 0, False, True),
        (True, 1, False, False),
        (True, -1, False, False),  # timeout / kill
        (False, 125, True, False),  # deadline skip
        (False, 0, True, False),  # a skip never counts, whatever code it carries
        (True, 0, True, False),
        (False, None, False, False),
        (True, None, False, False),
    ],
)
def test_only_a_run_that_exited_zero_counts(
    ran: bool, exit_code: int | None, skipped: bool, success: bool
) -> None:
    assert counts_as_success(ran=ran, exit_code=exit_code, skipped=skipped) is success
    table = ClaimTable()
    table.try_claim("s1", "o", now=T0, until=until(T0))
    assert (
        table.finish("s1", "o", ran=ran, exit_code=exit_code, skipped=skipped).record_success
        is success
    )


def test_release_and_expire_housekeeping() -> None:
    table = ClaimTable([Claim("s1", "o1", T0, T0 + 10 * S), Claim("s2", "o2", T0, T0 + 100 * S)])
    assert not table.release("s1", "someone-else")
    assert not table.release("nope", "o1")
    assert [c.schedule_id for c in table.expire(T0 + 10 * S)] == ["s1"]
    assert [c.schedule_id for c in table.snapshot()] == ["s2"]
    with pytest.raises(ValueError):
        table.try_claim("s3", "o3", now=T0, until=T0)


def test_success_ledger_round_trip() -> None:
    ledger = {"b": T0, "a": T0 - timedelta(days=1, microseconds=5)}
    decoded, warnings = decode_successes(encode_successes(ledger))
    assert decoded == ledger and warnings == []


@pytest.mark.parametrize("text", ["", "{", "[]", '{"successes": 3}', b"\xff\xfe", "null"])
def test_corrupt_ledger_starts_empty_with_a_warning(text: str | bytes) -> None:
    decoded, warnings = decode_successes(text)
    assert decoded == {} and len(warnings) == 1


def test_bad_ledger_entries_are_dropped() -> None:
    text = (
        '{"version": 1, "successes": {"a": "2025-01-01T00:00:00Z", "b": 7, "c": "soon", '
        '"d": "2025-01-01T00:00:00"}}'
    )
    decoded, warnings = decode_successes(text)
    assert decoded == {"a": datetime(2025, 1, 1, tzinfo=UTC), "d": datetime(2025, 1, 1, tzinfo=UTC)}
    assert len(warnings) == 2
