"""Which group and fleet-wide commands are for this pc (SPEC §3.2): members (enrolled, for
fleet-wide ones) at issue time only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from kanade.core.admission import broadcast_refusal

ENROLLED = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
JOINED = ENROLLED + timedelta(hours=1)
S = timedelta(seconds=1)


def refusal(
    scope: str, group: str | None, issued: datetime, **joined: datetime | None
) -> str | None:
    return broadcast_refusal(scope, group, issued, enrolled_at=ENROLLED, joined=joined)


def test_a_group_command_issued_before_the_pc_joined_is_not_for_it() -> None:
    why = refusal("group", "ops", JOINED - S, ops=JOINED)
    assert why is not None and "before this pc joined group ops" in why
    assert "2026-01-01T08:59:59Z" in why and "2026-01-01T09:00:00Z" in why


def test_a_group_command_issued_at_or_after_the_join_is() -> None:
    assert refusal("group", "ops", JOINED, ops=JOINED) is None
    assert refusal("group", "ops", JOINED + S, ops=JOINED) is None


def test_not_a_member_now_is_not_for_it() -> None:
    assert refusal("group", "ops", JOINED + S, web=ENROLLED) == "not in group ops"
    assert refusal("group", None, JOINED + S, web=ENROLLED) == "not in group None"


def test_an_unknown_join_counts_from_the_enrolment() -> None:
    # --group flags, or a membership value from before `since` was recorded.
    assert refusal("group", "ops", ENROLLED + S, ops=None) is None
    why = refusal("group", "ops", ENROLLED - S, ops=None)
    assert why is not None and "before this agent enrolled" in why


def test_fleet_wide_commands_count_from_the_enrolment() -> None:
    assert refusal("all", None, ENROLLED) is None
    why = refusal("all", None, ENROLLED - S)
    assert why is not None and "before this agent enrolled" in why


def test_the_enrolment_bounds_a_group_joined_before_it_too() -> None:
    # Added to the group before a re-install: the old group commands are not replayed.
    why = refusal("group", "ops", ENROLLED - S, ops=ENROLLED - timedelta(days=1))
    assert why is not None and "enrolled" in why


instants = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 1, 1),
                        timezones=st.just(UTC))  # fmt: skip


@given(
    issued=instants,
    since=st.one_of(st.none(), instants),
    scope=st.sampled_from(["all", "group"]),
)
def test_admitted_exactly_when_member_and_enrolled_at_issue_time(
    issued: datetime, since: datetime | None, scope: str
) -> None:
    admitted = refusal(scope, "ops", issued, ops=since) is None
    member = scope == "all" or since is None or issued >= since
    assert admitted == (issued >= ENROLLED and member)
