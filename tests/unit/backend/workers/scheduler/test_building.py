"""Building a fire (pure): one command per address subject for calendar/cron, one command
and one dispatch mark per pc for reconcile polls; the exec record stamped with the fire's
moment and carrying its occurrence-derived ids."""

from __future__ import annotations

from datetime import timedelta

from sched_helpers import NOW, entry, schedule

from kanade.backend.workers.scheduler.building import build
from kanade.core import subjects
from kanade.core.dispatch import Budgets
from kanade.core.scheduling import Fire, exec_id_for, occurrence_id, request_id_for
from kanade.core.validation import parse_job

JOB = parse_job(
    {
        "id": "hello",
        "version": "1",
        "execute": {"shell": "sh", "script": "echo hi", "timeout": "30s"},
    }
)
NOMINAL = NOW + timedelta(seconds=2)


def fire(sid: str) -> Fire:
    return Fire(sid, NOMINAL, occurrence_id(sid, NOMINAL), None, timedelta(0))


def test_a_calendar_fire_is_one_command_per_address_subject() -> None:
    s = schedule("cal", when={"cron": "* * * * * *"}, target={"groups": ["lab"], "pcs": ["pc-9"]})
    f = fire("cal")
    p = build(entry(s, NOMINAL), f, JOB, None, s.target, ["pc-1", "pc-9"], NOMINAL, None, Budgets())
    assert len(p.commands) == 1
    command, subs = p.commands[0]
    assert subs == [
        subjects.command_subject("group", "lab", "hello"),
        subjects.command_subject("pc", "pc-9", "hello"),
    ]
    assert command.request_id == request_id_for(f.occurrence_id)
    assert command.issued_at == NOMINAL  # stamped with the fire's moment, not the clock
    assert len(p.messages) == 2 and p.marks == []
    record = p.record
    assert record.exec_id == exec_id_for(f.occurrence_id)
    assert (record.created_at, record.nominal_time) == (NOMINAL, NOMINAL)
    assert record.initiated_by == "schedule:cal" and record.status == "pending"
    assert (record.expected_pcs, record.expected_count) == (["pc-1", "pc-9"], 2)
    assert p.record_message is not None


def test_a_reconcile_fire_addresses_and_marks_each_pc() -> None:
    s = schedule("rec", when={"per_pc": "once"})
    f = fire("rec")
    pcs = ["pc-1", "pc-2"]
    p = build(entry(s, NOMINAL), f, JOB, None, s.target, pcs, NOW, None, Budgets())
    assert [c.request_id for c, _ in p.commands] == [
        request_id_for(f.occurrence_id, pc) for pc in pcs
    ]
    assert [subs for _, subs in p.commands] == [
        [subjects.command_subject("pc", pc, "hello")] for pc in pcs
    ]
    assert [c.address.pcs for c, _ in p.commands] == [[pc] for pc in pcs]
    assert [m.pc_id for m in p.marks] == pcs
    assert all(m.dispatched_at == NOW and m.occurrence_id == f.occurrence_id for m in p.marks)
    assert p.record.target["pcs"] == pcs
