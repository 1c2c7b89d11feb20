"""``projector-decisions``: KANADE_DECISIONS → what agents' local schedulers decided
(``runs_on: agent``; SPEC §3.6, §4.4), counted with the backend's own decisions in the
schedule views and ``/metrics``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from nats.aio.msg import Msg
from sqlalchemy.engine import Connection

from kanade.backend.messaging.consumers import DECISIONS_CONSUMER
from kanade.backend.store import agent_decisions
from kanade.backend.workers.projection.worker import Decoded, Item, ItemProjector, recorded_at
from kanade.core import subjects
from kanade.core.models.decisions import ScheduleDecisionReport
from kanade.core.models.wire import WireDecodeError, decode

log = structlog.get_logger(__name__)


def decision_row(report: ScheduleDecisionReport, at: datetime) -> dict[str, Any]:
    return {
        "decision_id": report.decision_id,
        "schedule_id": report.schedule_id,
        "pc_id": report.pc_id,
        "occurrence_id": report.occurrence_id,
        "nominal_time": report.nominal_time,
        "decided_at": report.decided_at,
        "result": report.result,
        "reason": report.reason,
        "detail": report.detail or None,
        "count": report.count,
        "request_id": report.request_id,
        "recorded_at": at,
        "epoch": report.epoch,
        "totals": report.totals.model_dump(),
    }


def decode_decisions(msgs: list[Msg]) -> Decoded:
    """Decoded reports; poison (undecodable or out of bounds: logged with the field); and
    forgeries — a report whose pc or schedule is not its subject's: the broker lets an agent
    publish only under its own ``kanade.decision.<pc>.*`` (SPEC §8.1)."""
    out = Decoded()
    for msg in msgs:
        try:
            report = decode(ScheduleDecisionReport, msg.data)
            at = recorded_at(msg)
        except (WireDecodeError, ValueError) as exc:
            log.warning("poison decision skipped", subject=msg.subject, error=str(exc))
            out.poison.append(msg)
            continue
        if msg.subject != subjects.decision_subject(report.pc_id, report.schedule_id):
            log.warning(
                "decision dropped: its pc_id is not the sender's",
                subject=msg.subject,
                pc_id=report.pc_id,
            )
            out.forged.append(("decision", msg))
            continue
        out.items.append(Item(msg, decision_row(report, at)))
    return out


def write_decisions(conn: Connection, items: list[Item], now: datetime) -> None:
    # The log is kept short by retention (store.retention), not here.
    agent_decisions.record(conn, [i.row for i in items], now)


class DecisionsProjector(ItemProjector):
    spec = DECISIONS_CONSUMER
    kind = "decisions"
    decode = decode_decisions
    write = write_decisions

    def invalidates(self, kind: str, items: list[Item]) -> tuple[str, dict[str, Any]]:
        return "schedules", {}
