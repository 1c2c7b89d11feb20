"""kanade.backend.workers.projection.rows: a result or started event whose pc_id is not its
subject's pc is a forgery (SPEC §8.1), kept apart from rows and poison."""

from __future__ import annotations

from datetime import UTC, datetime

from nats.aio.msg import Msg

from kanade.backend.workers.projection.rows import decode_exec_records, decode_results
from kanade.core import subjects as s
from kanade.core.models.records import ExecStatusRecord
from kanade.core.models.wire import EventStarted, Result, encode
from kanade.core.statuses import ExecStatus

NOW = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)


def _msg(subject: str, data: bytes) -> Msg:
    # A JetStream delivery: the reply subject carries the stream's publish time (NOW).
    reply = f"$JS.ACK.KANADE_RESULTS.c.1.1.1.{int(NOW.timestamp()) * 10**9}.0"
    return Msg(_client=None, subject=subject, reply=reply, data=data)  # type: ignore[arg-type]


def _result(pc_id: str) -> bytes:
    return encode(
        Result(
            result_id=f"r-{pc_id}",
            request_id="q",
            exec_id="e",
            pc_id=pc_id,
            job_id="j",
            version="1",
            exit_code=0,
            finished_at=NOW,
        )
    )


def _started(pc_id: str) -> bytes:
    return encode(
        EventStarted(
            result_id=f"s-{pc_id}",
            request_id="q",
            exec_id="e",
            pc_id=pc_id,
            job_id="j",
            version="1",
            started_at=NOW,
        )
    )


def test_payloads_naming_another_pc_are_forgeries() -> None:
    msgs = [
        _msg(s.result_subject("pc-a"), _result("pc-a")),
        _msg(s.result_subject("pc-a"), _result("pc-b")),
        _msg(s.started_subject("pc-a"), _started("pc-b")),
        _msg(s.started_subject("pc-a"), _started("pc-a")),
        _msg(s.result_subject("pc-a"), b"not json"),
    ]
    decoded = decode_results(msgs)
    assert [(i.row["result_id"], i.started) for i in decoded.items] == [
        ("r-pc-a", False),
        ("s-pc-a", True),
    ]
    assert [(kind, m) for kind, m in decoded.forged] == [("result", msgs[1]), ("started", msgs[2])]
    assert decoded.poison == [msgs[4]]


def test_an_approved_record_brings_the_exec_deadline_along() -> None:
    raw = ExecStatusRecord(
        exec_id="e1", status=ExecStatus.PENDING, at=NOW, deadline_at=NOW
    ).encode()
    (item,) = decode_exec_records([_msg(s.exec_subject("approved", "e1"), raw)]).items
    assert item.status_only and item.row == {
        "exec_id": "e1", "status": "pending", "at": NOW, "by": None, "deadline_at": NOW
    }
    plain = ExecStatusRecord(exec_id="e1", status=ExecStatus.CANCELLED).encode()
    (item,) = decode_exec_records([_msg(s.exec_subject("cancelled", "e1"), plain)]).items
    assert "deadline_at" not in item.row
