"""Notification events (kanade.core.notify.events): one id per fact, bounded texts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kanade.core.notify import events as ev
from kanade.core.notify.events import MAX_LIST, MAX_SUMMARY, EventKind

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _failed(exec_id: str = "e" * 32, pcs: int = 3) -> ev.Event:
    return ev.exec_failed(
        exec_id=exec_id, job_id="disk", version="1", kind="job", failed=pcs, expected=10,
        finished=10, no_result=0, initiated_by="alice", schedule_id=None,
        failed_pcs=[f"pc-{i}" for i in range(pcs)], at=T0,
    )  # fmt: skip


def test_the_same_fact_has_the_same_id_whenever_it_is_detected() -> None:
    assert _failed().id == _failed().id
    assert _failed("a" * 32).id != _failed("b" * 32).id
    assert len(_failed().id) == 32


def test_an_exec_failure_names_the_job_and_a_few_failed_pcs() -> None:
    e = _failed(pcs=3)
    assert e.kind is EventKind.EXEC_FAILED
    assert e.summary == (
        "exec eeeeeeeeee… of job disk finished: 3 of 10 pc(s) failed (pc-0, pc-1, pc-2)"
    )


def test_lists_and_texts_are_bounded_however_big_the_fleet() -> None:
    e = _failed(pcs=10_000)
    assert len(e.details["failed_pcs"]) == MAX_LIST
    assert len(e.summary) <= MAX_SUMMARY
    s = ev.schedule_decision(
        result="skipped", schedule_id="s", occurrence_id="o" * 1000, nominal_time=T0,
        reason="frozen", detail="x" * 10_000, runs_on="agent", pcs=["p"] * 500, pc_count=500,
        at=T0,
    )  # fmt: skip
    assert len(s.summary) <= MAX_SUMMARY and len(s.details["detail"]) <= ev.MAX_TEXT
    assert len(s.details["pcs"]) == MAX_LIST and s.details["pc_count"] == 500
    assert len(s.key) <= ev.MAX_KEY


def test_skipped_and_missed_fires_are_two_kinds() -> None:
    common = dict(schedule_id="s", occurrence_id="s@1", nominal_time=T0, reason="frozen",
                  detail=None, runs_on="backend", at=T0)  # fmt: skip
    assert ev.schedule_decision(result="skipped", **common).kind is EventKind.SCHEDULE_SKIPPED  # type: ignore[arg-type]
    missed = ev.schedule_decision(result="missed", **common)  # type: ignore[arg-type]
    assert missed.kind is EventKind.SCHEDULE_MISSED
    assert missed.summary == "schedule s: fire at 2026-03-01T12:00:00Z missed"


def test_an_agent_goes_offline_when_its_silence_crosses_the_threshold() -> None:
    e = ev.agent_offline(pc_id="pc-1", hostname="h", last_seen=T0, stopped=False,
                         threshold=timedelta(minutes=10))  # fmt: skip
    assert e.occurred_at == T0 + timedelta(minutes=10)
    assert e.threshold_s == 600
    assert "offline for more than 10m" in e.summary
    # A new silence (a later last heartbeat) is a new fact; another threshold too.
    later = ev.agent_offline(pc_id="pc-1", hostname="h", last_seen=T0 + timedelta(hours=1),
                             stopped=False, threshold=timedelta(minutes=10))  # fmt: skip
    assert later.id != e.id


def test_a_halted_rollout_names_its_wave_one_based() -> None:
    e = ev.rollout_halted(rollout_id="r1", exec_id="r1", job_id="j", version="1", wave=0,
                          wave_count=3, reason="too many failures", failure_rate=0.5,
                          at=T0)  # fmt: skip
    assert e.summary == "rollout r1 of job j halted at wave 1/3: too many failures"
    assert e.key == "rollout.halted:r1:0"


def test_a_quarantined_version_is_one_event_per_agent_and_version() -> None:
    a = ev.agent_quarantined(pc_id="pc-1", version="2.0", error="no start", at=T0)
    b = ev.agent_quarantined(pc_id="pc-1", version="2.0", error="other", at=T0 + timedelta(1))
    assert a.id == b.id and a.kind is EventKind.AGENT_QUARANTINED


def test_a_group_summary_counts_the_events() -> None:
    assert ev.group_summary("agent.offline", ["a", "b"], 2) == "2 agents offline"
    assert ev.group_summary("agent.offline", ["only one"], 1) == "only one"
    assert EventKind.TEST not in ev.SUBSCRIBABLE
    assert set(ev.DESCRIPTIONS) == set(EventKind)
