"""The pure approval rules (kanade.core.approvals): expiry, the two-person rule, re-stamping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kanade.core.approvals import approval_expires_at, is_expired, may_approve, restamp
from kanade.core.models.wire import Command

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def test_approval_expiry_with_an_injected_clock() -> None:
    expires = approval_expires_at(T0, timedelta(hours=24))
    assert expires == T0 + timedelta(hours=24)
    assert not is_expired(expires, expires - timedelta(microseconds=1))
    assert is_expired(expires, expires)  # inclusive
    assert not may_approve("alice", "alice", auth_enabled=True)
    assert may_approve("alice", "bob", auth_enabled=True)
    assert may_approve("anonymous", "anonymous", auth_enabled=False)


def _command() -> Command:
    return Command.model_validate(
        {
            "exec_id": "e1",
            "request_id": "r1",
            "job_id": "j",
            "version": "1",
            "address": {"all": True},
            "issued_at": T0.isoformat(),
            "deadline_at": (T0 + timedelta(seconds=30)).isoformat(),
            "shell": "sh",
            "script": "true",
            "timeout_s": 60,
        }
    )


def test_restamp_counts_the_start_deadline_from_the_new_issue_time() -> None:
    later = T0 + timedelta(hours=3)
    cmd = restamp(_command(), later, 30.0)
    assert cmd.issued_at == later
    assert cmd.deadline_at == later + timedelta(seconds=30)
    assert cmd.request_id == "r1"  # only the timing changes


def test_restamp_without_a_start_deadline_clears_it() -> None:
    cmd = restamp(_command(), T0 + timedelta(hours=3), None)
    assert cmd.deadline_at is None


def test_only_removing_a_stored_requirement_lowers_approval() -> None:
    from kanade.core.approvals import lowers_approval

    assert lowers_approval(True, False)  # a new version without the gate
    assert lowers_approval(True, None)  # deleting the job
    assert not lowers_approval(True, True)
    assert not lowers_approval(False, False)
    assert not lowers_approval(False, None)
