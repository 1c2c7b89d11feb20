"""The agent's local scheduler reports what it decided (SPEC §3.6, §4.4): fires, skips with
their reason (frozen, the previous run still holding the claim, a starting deadline passed)
and occurrences missed while the agent was down — each with the running totals of its
schedule, which survive a restart of the agent."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from test_local_scheduler import EVERY_SECOND, T0, Clock, Rig, clock, sched

from kanade.agent.scheduling.scheduler import LocalScheduler
from kanade.core.models.decisions import DETAIL_MAX, ScheduleDecisionReport
from kanade.core.models.wire import decode


class ReportingRig(Rig):
    def __init__(self, root: Path, clock: Clock) -> None:
        self.reports: list[ScheduleDecisionReport] = []
        super().__init__(root, clock)

    def new_scheduler(self, data: Path | None = None) -> LocalScheduler:
        s = super().new_scheduler(data)
        s._report = self.reports.append  # what the agent wires to its outbox
        return s

    def results(self) -> list[tuple[str, str | None, int]]:
        return [(r.result, r.reason, r.count) for r in self.reports]


__all__ = ["clock"]  # the shared fixture


@pytest.fixture
def rig(tmp_path: Path, clock: Clock) -> ReportingRig:
    return ReportingRig(tmp_path, clock)


async def test_fires_and_frozen_skips_are_reported_with_running_totals(rig: ReportingRig) -> None:
    rig.catalogs([sched("each", EVERY_SECOND)])
    await rig.sync()
    [first] = rig.tick(seconds=1)
    rig.finish(first)
    rig.tick(seconds=1)
    assert rig.results() == [("fired", None, 1), ("fired", None, 1)]
    fired = rig.reports[-1]
    assert fired.pc_id == "pc-1" and fired.schedule_id == "each"
    assert fired.request_id is not None and fired.totals.fired == 2
    until = rig.clock() + timedelta(seconds=5)
    freeze = json.dumps({"until": until.isoformat(), "by": "ops", "reason": "incident"})
    rig.catalogs([sched("each", EVERY_SECOND)], freeze=freeze.encode())
    await rig.sync()
    rig.tick(seconds=1)
    frozen = rig.reports[-1]
    assert (frozen.result, frozen.reason) == ("skipped", "frozen")
    assert (frozen.totals.fired, frozen.totals.skipped, frozen.totals.missed) == (2, 1, 0)
    # Every report decodes as the backend reads it (bounded, typed).
    for r in rig.reports:
        assert decode(ScheduleDecisionReport, r.encode()) == r


async def test_a_held_claim_is_reported_as_a_skip(rig: ReportingRig) -> None:
    rig.catalogs([sched("each", EVERY_SECOND)])
    await rig.sync()
    rig.tick(seconds=1)  # fires, its run still in flight
    rig.tick(seconds=1)
    assert rig.results()[-1] == ("skipped", "claim_held", 1)


async def test_missed_occurrences_are_reported_and_totals_survive_a_restart(
    tmp_path: Path, clock: Clock
) -> None:
    rig = ReportingRig(tmp_path, clock)
    rig.catalogs([sched("tenly", {"cron": "*/10 * * * *"}, catchup="skip")])
    await rig.sync()
    rig.tick(seconds=30)
    epoch = rig.s.decision_epoch
    clock.advance(minutes=24, seconds=20)  # down 10:01 → 10:25:20: 10:10 and 10:20 missed
    restarted = rig.new_scheduler()
    await rig.sync(restarted)
    rig.tick(restarted)
    [missed] = rig.reports
    assert (missed.result, missed.count, missed.reason) == ("missed", 2, "catchup_skip")
    assert missed.nominal_time == T0 + timedelta(minutes=20)
    assert missed.epoch == epoch  # same decision file, same epoch
    assert missed.totals.missed == 2
    again = rig.new_scheduler()
    await rig.sync(again)
    assert again.decision_totals == {"tenly": {"fired": 0, "skipped": 0, "missed": 2}}


async def test_a_deadline_skip_is_a_skip_not_a_fire(tmp_path: Path, clock: Clock) -> None:
    rig = ReportingRig(tmp_path, clock)
    rig.catalogs([sched("tenly", {"cron": "*/10 * * * *"}, starting_deadline="5s")])
    await rig.sync()
    rig.tick(seconds=30)
    clock.advance(minutes=24, seconds=20)
    restarted = rig.new_scheduler()
    await rig.sync(restarted)
    rig.tick(restarted)  # the gate turns the late command into a 125 result
    assert ("skipped", "deadline_passed", 1) in rig.results()
    assert all(r.result != "fired" for r in rig.reports)


async def test_a_long_reason_is_bounded_by_the_writer(rig: ReportingRig) -> None:
    rig.catalogs([sched("each", EVERY_SECOND)])
    await rig.sync()
    rig.s._decided("each", rig.clock(), "skipped", rig.clock(), reason="r" * 500,
                   detail="d" * 5000)  # fmt: skip
    report = rig.reports[-1]
    assert len(report.detail) == DETAIL_MAX and report.reason is not None
    assert len(report.reason) <= 64
