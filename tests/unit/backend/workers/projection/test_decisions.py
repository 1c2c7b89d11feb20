"""kanade.backend.workers.projection.decisions: an agent's schedule decision is checked for
its sender (the pc and schedule of its subject, SPEC §8.1) and its bounds before it becomes a
row; anything else is poison or a counted forgery, never a row."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg

from kanade.backend.workers.projection.decisions import decode_decisions
from kanade.core import subjects as s
from kanade.core.models.decisions import DecisionTotals, ScheduleDecisionReport

NOW = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)


def _msg(subject: str, data: bytes) -> Msg:
    # A JetStream delivery: the reply subject carries the stream's publish time (NOW).
    reply = f"$JS.ACK.KANADE_DECISIONS.c.1.1.1.{int(NOW.timestamp()) * 10**9}.0"
    return Msg(_client=None, subject=subject, reply=reply, data=data)  # type: ignore[arg-type]


def _report(pc: str = "pc-a", schedule: str = "nightly", **kw: Any) -> ScheduleDecisionReport:
    body: dict[str, Any] = {
        "pc_id": pc,
        "schedule_id": schedule,
        "occurrence_id": f"{schedule}@1",
        "nominal_time": NOW,
        "decided_at": NOW,
        "result": "skipped",
        "reason": "frozen",
        "detail": "the fleet is frozen",
        "epoch": "e1",
        "totals": DecisionTotals(skipped=1),
        **kw,
    }
    return ScheduleDecisionReport(**body)


def test_a_report_becomes_a_row_with_the_stream_time() -> None:
    decoded = decode_decisions([_msg(s.decision_subject("pc-a", "nightly"), _report().encode())])
    [item] = decoded.items
    assert item.row["decision_id"] == "pc-a:nightly@1:skipped"
    assert item.row["recorded_at"] == NOW and item.row["totals"]["skipped"] == 1
    assert not decoded.poison and not decoded.forged


def test_a_report_for_another_pc_or_schedule_is_a_forgery() -> None:
    msgs = [
        _msg(s.decision_subject("pc-a", "nightly"), _report(pc="pc-b").encode()),
        _msg(s.decision_subject("pc-a", "other"), _report().encode()),
    ]
    decoded = decode_decisions(msgs)
    assert not decoded.items and [k for k, _ in decoded.forged] == ["decision", "decision"]


def test_unbounded_or_malformed_reports_are_poison() -> None:
    good = json.loads(_report().encode())
    bad = [
        b"not json",
        json.dumps({**good, "detail": "x" * 5000}).encode(),
        json.dumps({**good, "result": "exploded"}).encode(),
        json.dumps({**good, "count": -1}).encode(),
        json.dumps({**good, "totals": {"fired": 10**12}}).encode(),
        json.dumps({**good, "schedule_id": "a.b"}).encode(),
    ]
    decoded = decode_decisions([_msg(s.decision_subject("pc-a", "nightly"), b) for b in bad])
    assert len(decoded.poison) == len(bad) and not decoded.items
