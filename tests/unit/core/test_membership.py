"""The KV membership value (``kanade_groups/<pc>``): each group with the instant the pc
joined it; the older plain list of names still reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from kanade.core.models.membership import Membership

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)


def test_round_trip_keeps_each_join_instant() -> None:
    m = Membership(groups={"ops": T0, "web": T0 + H})
    raw = m.encode()
    assert json.loads(raw) == [
        "ops",
        "web",
        {"since": {"ops": "2026-01-01T08:00:00Z", "web": "2026-01-01T09:00:00Z"}},
    ]
    assert Membership.decode(raw) == m and Membership.decode(raw).names == ["ops", "web"]


def test_a_reader_from_before_since_still_reads_the_groups() -> None:
    # What agents and backends without `since` did with the value: keep the strings.
    listed = json.loads(Membership(groups={"ops": T0, "web": None}).encode())
    assert sorted(g for g in listed if isinstance(g, str)) == ["ops", "web"]


def test_a_value_from_before_since_reads_as_groups_without_a_join_instant() -> None:
    m = Membership.decode(b'["web", "ops", 7, "ops"]')
    assert m.names == ["ops", "web"] and m.since("ops") is None


def test_unreadable_values_are_no_membership_and_bad_entries_lose_only_their_instant() -> None:
    for raw in (None, b"", b"garbage", b'{"groups": ["a"]}', b"42", b'"ops"'):
        assert Membership.decode(raw).names == []
    m = Membership.decode(
        b'["a", "b", "c", {"since": {"a": "not a time", "b": 5, "c": "2026-01-01T08:00:00Z",'
        b' "not-listed": "2026-01-01T08:00:00Z"}}, {"since": {"a": "2026-01-01T08:00:00Z"}}]'
    )
    assert m.groups == {"a": None, "b": None, "c": T0}


def test_changes_keep_the_instant_of_kept_groups_and_stamp_new_ones() -> None:
    m = Membership(groups={"ops": T0, "legacy": None})
    changed = m.with_groups(["ops", "legacy", "web"], T0 + H)
    assert changed.groups == {"ops": T0, "legacy": None, "web": T0 + H}


def test_leaving_and_joining_again_starts_afresh() -> None:
    m = Membership(groups={"ops": T0, "web": T0})
    left = m.with_groups(["web"], T0 + H)
    back = left.with_groups(["web", "ops"], T0 + 2 * H)
    assert back.since("ops") == T0 + 2 * H and back.since("web") == T0
