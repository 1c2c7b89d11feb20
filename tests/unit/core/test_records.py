"""Wire records of kanade.core.models.records: the bytes the hand-built dicts had, and
tolerant decoding."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from kanade.core.models.records import ExecStatusRecord, KillRequest, Revocation
from kanade.core.models.wire import WireDecodeError, decode
from kanade.core.statuses import ExecStatus

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_kill_request_bytes_and_round_trip() -> None:
    raw = KillRequest(exec_id="e1").encode()
    assert raw == json.dumps({"exec_id": "e1"}, sort_keys=True, separators=(",", ":")).encode()
    assert decode(KillRequest, raw).exec_id == "e1"
    with pytest.raises(WireDecodeError):
        decode(KillRequest, b'{"nope": 1}')


def test_exec_status_record_cancel_bytes() -> None:
    record = ExecStatusRecord(exec_id="e1", status=ExecStatus.CANCELLED, at=AT, by="alice")
    want = {"exec_id": "e1", "status": "cancelled", "at": "2026-03-01T12:00:00Z", "by": "alice"}
    assert record.encode() == json.dumps(want, sort_keys=True, separators=(",", ":")).encode()
    assert record.subject() == "kanade.exec.cancelled.e1"
    assert record.msg_id() == "exec-cancelled:e1"


@pytest.mark.parametrize(
    ("status", "event"),
    [("pending", "approved"), ("rejected", "rejected"), ("cancelled", "cancelled")],
)
def test_exec_status_events(status: str, event: str) -> None:
    record = ExecStatusRecord(exec_id="e1", status=ExecStatus(status))
    assert record.event == event
    assert record.msg_id() == f"exec-{event}:e1"


def test_exec_status_record_decoding_is_tolerant_but_checks_status() -> None:
    got = decode(ExecStatusRecord, b'{"exec_id": "e1", "status": "rejected", "extra": 1}')
    assert got.status is ExecStatus.REJECTED and got.at is None
    for bad in (b'{"exec_id": "e1", "status": "bogus"}', b'{"exec_id": 3, "status": "pending"}'):
        with pytest.raises(WireDecodeError):
            decode(ExecStatusRecord, bad)
    with pytest.raises(KeyError):
        _ = ExecStatusRecord(exec_id="e1", status=ExecStatus.RUNNING).event


def test_revocation_bytes() -> None:
    record = Revocation(revoked_at=AT, by="alice", reason="")
    want = {"revoked_at": "2026-03-01T12:00:00Z", "by": "alice", "reason": ""}
    assert record.fields() == want
    assert record.encode() == json.dumps(want, sort_keys=True, separators=(",", ":")).encode()


def test_an_approval_record_carries_the_exec_deadline() -> None:
    deadline = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    record = ExecStatusRecord(
        exec_id="e1", status=ExecStatus.PENDING, at=AT, by="bob", deadline_at=deadline
    )
    body = json.loads(record.encode())
    assert body["deadline_at"] == "2026-03-08T12:00:00Z"
    assert decode(ExecStatusRecord, record.encode()).deadline_at == deadline
    # without one the bytes are what they always were
    plain = ExecStatusRecord(exec_id="e1", status=ExecStatus.REJECTED)
    assert "deadline_at" not in json.loads(plain.encode())
