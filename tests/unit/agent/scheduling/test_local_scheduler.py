"""The agent's local scheduler (SPEC §3.6) without a broker: a real FleetState whose mirrors
are filled by hand, a real admission Ledger behind ``submit``, and a hand-driven clock.

The end-to-end behaviour (real agents, real nats-server) is in
``tests/integration/test_agent_scheduler_e2e.py``.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kanade.agent.durable.ledger import Admission, Ledger, command_digest
from kanade.agent.durable.schedstore import STORE_DIR, SUCCESSES_FILE
from kanade.agent.fleet.state import FleetState
from kanade.agent.scheduling.scheduler import LocalScheduler
from kanade.core import exitcodes
from kanade.core.gates import check_deadline
from kanade.core.models.schedule import Schedule
from kanade.core.models.wire import Command, Result, encode
from kanade.core.results import run_result, skipped_result
from kanade.core.scheduling import (
    exec_id_for,
    expected_version,
    occurrence_id,
    request_id_for,
)
from kanade.core.validation import parse_job, parse_schedule

T0 = datetime(2025, 6, 2, 10, 0, 0, tzinfo=UTC)  # a Monday, on the minute


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> datetime:
        self.now += timedelta(**kw)
        return self.now


class Host:
    """What the agent gives its scheduler: ledger admission and its groups."""

    def __init__(self, root: Path) -> None:
        self.ledger = Ledger(root / "ledger", durable=False)
        self.ledger.load()
        self.commands: list[Command] = []
        self.admissions: list[Admission] = []
        self.groups: list[str] = []
        self.running: set[str] = set()

    def submit(self, cmd: Command) -> Admission:
        raw = encode(cmd)
        admission = self.ledger.admit(
            cmd.request_id, command_digest(raw), raw.decode(), time.time()
        )
        self.admissions.append(admission)
        if admission is Admission.NEW:
            self.commands.append(cmd)
            self.running.add(cmd.request_id)
        return admission


def job_doc(job_id: str = "job-1", **execute: Any) -> bytes:
    ex = {"shell": "sh", "script": "echo hi", "timeout": "30s", **execute}
    job = parse_job({"id": job_id, "version": "1", "execute": ex})
    return json.dumps(job.model_dump(mode="json", by_alias=True, exclude_none=True)).encode()


def sched(schedule_id: str, when: dict[str, Any], **fields: Any) -> Schedule:
    body: dict[str, Any] = {
        "id": schedule_id,
        "job_id": "job-1",
        "when": when,
        "target": {"pcs": ["pc-1"]},
        "runs_on": "agent",
        "tz": "utc",
    }
    body.update(fields)
    return parse_schedule(body)


def doc(schedule: Schedule) -> bytes:
    return json.dumps(schedule.model_dump(mode="json")).encode()


class Rig:
    def __init__(self, root: Path, clock: Clock, host: Host | None = None) -> None:
        self.root = root
        self.clock = clock
        self.host = host or Host(root)
        self.fleet = FleetState(pc_id="pc-1", groups=[])
        self.versions: list[str] = []
        self.s = self.new_scheduler()

    def new_scheduler(self, data: Path | None = None) -> LocalScheduler:
        return LocalScheduler(
            pc_id="pc-1",
            data_dir=data or self.root / "data",
            fleet=self.fleet,
            submit=self.host.submit,
            groups=lambda: self.host.groups,
            in_flight=lambda rid: rid in self.host.running,
            on_applied=self.versions.append,
            durable=False,
            clock=self.clock,
            local_tz=UTC,
        )

    def catalogs(
        self,
        schedules: list[Schedule] | None = None,
        jobs: dict[str, bytes] | None = None,
        freeze: bytes | None = None,
        membership: list[str] | None = None,
    ) -> None:
        """What a successful re-sync of every mirror leaves behind."""
        f = self.fleet
        if schedules is not None:
            f.schedules.values = {s.id: doc(s) for s in schedules}
            f.schedules.synced = True
        f.jobs.values = jobs if jobs is not None else {"job-1": job_doc()}
        f.jobs.synced = True
        f.freeze.values = {} if freeze is None else {"fleet": freeze}
        f.freeze.synced = True
        f.membership.values = (
            {} if membership is None else {"pc-1": json.dumps(membership).encode()}
        )
        f.membership.synced = True

    async def sync(self, scheduler: LocalScheduler | None = None) -> None:
        await (scheduler or self.s).refresh()

    def tick(self, scheduler: LocalScheduler | None = None, **advance: float) -> list[Command]:
        before = len(self.host.commands)
        if advance:
            self.clock.advance(**advance)
        (scheduler or self.s).tick(self.clock())
        return self.host.commands[before:]

    def finish(self, cmd: Command, *, exit_code: int = 0, skipped: bool = False,
               scheduler: LocalScheduler | None = None) -> Result:
        now = self.clock()
        if skipped:
            result = skipped_result(cmd, "pc-1", exit_code=exit_code, reason="skipped", now=now)
        else:
            result = run_result(
                cmd, "pc-1", exit_code=exit_code, stdout=b"", stderr=b"", stdout_total=0,
                stderr_total=0, stdout_ref=None, stderr_ref=None, started_at=now,
                finished_at=now, attempts=1, note=None,
            )
        self.host.running.discard(cmd.request_id)
        (scheduler or self.s).on_finished(cmd, result)
        return result


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + timedelta(seconds=30))


@pytest.fixture
def rig(tmp_path: Path, clock: Clock) -> Rig:
    return Rig(tmp_path, clock)


EVERY_SECOND = {"cron": "* * * * * *"}


# --- registration ----------------------------------------------------------------------------
async def test_registers_exactly_the_applicable_set_and_reports_the_expected_version(
    rig: Rig,
) -> None:
    catalog = [
        sched("mine", EVERY_SECOND),
        sched("all", EVERY_SECOND, target={"all": True}),
        sched("web", EVERY_SECOND, target={"groups": ["web"]}),
        sched("other-pc", EVERY_SECOND, target={"pcs": ["pc-2"]}),
        sched("central", EVERY_SECOND, runs_on="backend"),
        sched("off", EVERY_SECOND, enabled=False),
    ]
    rig.catalogs(catalog)
    await rig.sync()
    assert sorted(rig.s.registered) == ["all", "mine"]
    assert rig.s.version == expected_version(catalog, "pc-1", [])
    assert rig.versions == [rig.s.version]

    # Membership changes (KV or static) re-evaluate every schedule at once.
    rig.host.groups = ["web"]
    await rig.sync()
    assert sorted(rig.s.registered) == ["all", "mine", "web"]
    assert rig.s.version == expected_version(catalog, "pc-1", ["web"])
    rig.host.groups = []
    await rig.sync()
    assert rig.s.version == expected_version(catalog, "pc-1", [])


async def test_vanished_unregistered_changed_reregistered_unchanged_kept(rig: Rig) -> None:
    a, b = sched("a", EVERY_SECOND), sched("b", EVERY_SECOND)
    rig.catalogs([a, b])
    await rig.sync()
    kept = rig.s.registered["a"]
    a2 = sched("a", EVERY_SECOND, description="only words changed")
    b2 = sched("b", {"cron": "*/5 * * * * *"})
    rig.catalogs([a2, b2, sched("c", EVERY_SECOND)])
    await rig.sync()
    assert rig.s.registered["a"] is kept  # same canonical digest: not re-registered
    assert rig.s.registered["b"].schedule.when.cron == "*/5 * * * * *"
    rig.catalogs([b2])
    await rig.sync()
    assert list(rig.s.registered) == ["b"]


async def test_unreadable_documents_are_ignored_not_fatal(rig: Rig) -> None:
    rig.catalogs([sched("good", EVERY_SECOND)])
    rig.fleet.schedules.values["bad"] = b"{not json"
    rig.fleet.schedules.values["worse"] = b'{"id": "worse", "when": {"cron": "nope"}}'
    await rig.sync()
    assert list(rig.s.registered) == ["good"]


async def test_an_unsynced_mirror_falls_back_to_the_cached_catalog(
    tmp_path: Path, clock: Clock
) -> None:
    first = Rig(tmp_path, clock)
    first.catalogs([sched("cached", EVERY_SECOND)])
    await first.sync()
    # A restart with no broker: nothing read from KV yet.
    second = Rig(tmp_path, clock, host=first.host)
    await second.sync()
    assert list(second.s.registered) == ["cached"]
    assert second.s.version == first.s.version
    fired = second.tick(seconds=1)
    assert [c.schedule_id for c in fired] == ["cached"]


# --- firing ---------------------------------------------------------------------------------------
async def test_cron_fires_every_occurrence_with_deterministic_commands(rig: Rig) -> None:
    schedule = sched("each", EVERY_SECOND, jitter="2s", starting_deadline="10s",
                     on_failure={"retry": {"max": 2, "backoff": "1s"}})
    rig.catalogs([schedule])
    await rig.sync()
    assert rig.tick() == []  # registered at now: nothing older fires
    fired = rig.tick(seconds=1)
    rig.finish(fired[0])  # releases the claim
    fired += rig.tick(seconds=1)
    assert [c.nominal_time for c in fired] == [T0 + timedelta(seconds=31),
                                               T0 + timedelta(seconds=32)]
    first = fired[0]
    occ = occurrence_id("each", T0 + timedelta(seconds=31))
    assert first.request_id == request_id_for(occ, "pc-1")
    assert first.exec_id == exec_id_for(occ)
    assert first.schedule_id == "each" and first.issued_at == first.nominal_time
    assert first.deadline_at == first.nominal_time + timedelta(seconds=10)
    assert first.jitter_s == 2.0 and first.retry is not None and first.retry.max == 2
    assert first.address.pcs == ["pc-1"] and first.script == "echo hi"


async def test_live_claim_skips_concurrent_ticks_and_release_is_by_the_holder(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.catalogs([sched("each", EVERY_SECOND)])
    await rig.sync()
    [run] = rig.tick(seconds=1)
    assert rig.tick(seconds=1) == [] and rig.tick(seconds=1) == []  # still claimed
    assert rig.s.skipped_ticks == 2
    # A late finisher that does not hold the claim changes nothing.
    stranger = run.model_copy(update={"request_id": "someone-else"})
    rig.finish(stranger)
    assert rig.s.claims.get("each") is not None
    rig.finish(run)
    assert rig.s.claims.get("each") is None
    assert len(rig.tick(seconds=1)) == 1


async def test_an_expired_claim_is_taken_over_with_a_warning(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.catalogs([sched("each", EVERY_SECOND)])
    await rig.sync()
    [lost] = rig.tick(seconds=1)
    claim = rig.s.claims.get("each")
    assert claim is not None and claim.owner == lost.request_id
    # timeout 30s + 60s margin: the claim lives 90 s
    assert claim.until - claim.claimed_at == timedelta(seconds=90)
    rig.clock.advance(seconds=89)
    assert rig.tick(seconds=0.5) == []
    with caplog.at_level(logging.WARNING, logger="kanade.agent.scheduler"):
        [taker] = rig.tick(seconds=1)
    assert "taken over" in caplog.text
    rig.finish(lost)  # the lost run finally reports: it must not release the new claim
    claim = rig.s.claims.get("each")
    assert claim is not None and claim.owner == taker.request_id


async def test_per_pc_once_skips_never_count_and_success_survives_restart(
    tmp_path: Path, rig: Rig
) -> None:
    rig.catalogs([sched("once", {"per_pc": "once"})])
    await rig.sync()
    [first] = rig.tick()  # the current poll is evaluated at registration
    assert first.nominal_time == T0
    rig.finish(first, exit_code=exitcodes.REVOKED, skipped=True)
    assert "once" not in rig.s.successes
    [second] = rig.tick(seconds=60)  # next poll: fires again, a skip never counts
    rig.finish(second, exit_code=3)  # ran but failed: not a success either
    [third] = rig.tick(seconds=60)
    rig.finish(third, exit_code=0)
    assert rig.s.successes["once"] == third.nominal_time
    assert rig.tick(seconds=60) == []

    restarted = rig.new_scheduler()
    await rig.sync(restarted)
    assert rig.tick(restarted) == [] and rig.tick(restarted, seconds=120) == []


async def test_per_pc_every_rearms_when_every_has_passed(rig: Rig) -> None:
    rig.catalogs([sched("hourly", {"per_pc": {"every": "1h"}})])
    await rig.sync()
    [run] = rig.tick()
    rig.finish(run)
    assert rig.tick(minutes=59) == []
    assert len(rig.tick(minutes=1)) == 1  # exactly `every` after the success re-arms


async def test_corrupt_success_file_starts_empty_with_a_warning(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    path = rig.root / "data" / STORE_DIR / SUCCESSES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{ torn")
    with caplog.at_level(logging.WARNING, logger="kanade.agent.scheduler"):
        fresh = rig.new_scheduler()
    assert fresh.successes == {}
    assert "corrupt" in caplog.text


# --- restarts and catchup --------------------------------------------------------------------
@pytest.mark.parametrize("catchup", ["once", "skip"])
async def test_occurrences_missed_while_the_agent_was_down_follow_catchup(
    tmp_path: Path, clock: Clock, catchup: str, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(tmp_path, clock)
    rig.catalogs([sched("tenly", {"cron": "*/10 * * * *"}, catchup=catchup)])
    await rig.sync()
    assert rig.tick(seconds=30) == []  # 10:01
    clock.advance(minutes=24, seconds=20)  # the agent was down 10:01 → 10:25:20
    restarted = rig.new_scheduler()
    await rig.sync(restarted)
    with caplog.at_level(logging.WARNING, logger="kanade.agent.scheduler"):
        fired = rig.tick(restarted)
    assert "missed" in caplog.text
    if catchup == "once":  # the latest missed one runs, once; 10:10 stays missed
        assert [c.nominal_time for c in fired] == [T0 + timedelta(minutes=20)]
    else:
        assert fired == []


@pytest.mark.parametrize("catchup", ["once", "skip"])
async def test_an_occurrence_the_agent_was_down_for_is_never_on_time_however_short(
    tmp_path: Path, clock: Clock, catchup: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue #14 item 5: down from 10:09:55 to 10:10:30, inside the 60 s late tolerance.
    rig = Rig(tmp_path, clock)
    rig.catalogs([sched("tenly", {"cron": "*/10 * * * *"}, catchup=catchup)])
    await rig.sync()
    await rig.s.setup()  # the loop started at 10:00:30: up for everything after
    assert rig.tick(minutes=9, seconds=25) == []  # 10:09:55, then down
    clock.advance(seconds=35)  # restarted at 10:10:30
    restarted = rig.new_scheduler()
    await restarted.setup()
    await rig.sync(restarted)
    with caplog.at_level(logging.INFO, logger="kanade.agent.scheduler"):
        fired = rig.tick(restarted, seconds=0.01)
    if catchup == "once":  # the occurrence it was down for runs as the catch-up
        assert [c.nominal_time for c in fired] == [T0 + timedelta(minutes=10)]
        assert "catching up" in caplog.text
    else:
        assert fired == []
        assert "1 occurrence(s) missed" in caplog.text
    # Up at 10:20, it decides 10:20 a little late: its own lateness, on time, either way.
    assert [c.nominal_time for c in rig.tick(restarted, minutes=9, seconds=32)] == [
        T0 + timedelta(minutes=20)
    ]


async def test_refiring_an_occurrence_is_a_ledger_duplicate(tmp_path: Path, clock: Clock) -> None:
    rig = Rig(tmp_path, clock)
    rig.catalogs([sched("each", EVERY_SECOND)])
    await rig.sync()
    [run] = rig.tick(seconds=1)
    # Another scheduler state (e.g. lost before it was written) decides the same occurrence.
    other = rig.new_scheduler(tmp_path / "other-data")
    await rig.sync(other)
    assert run.nominal_time is not None
    other.registered["each"].last_tick = run.nominal_time - timedelta(seconds=1)
    other.registered["each"].next_due = run.nominal_time
    assert rig.tick(other) == []
    assert rig.host.admissions[-1] is Admission.DUPLICATE
    assert other.claims.get("each") is not None  # the run is still in flight: keep the claim
    rig.finish(run)
    rig.finish(run, scheduler=other)
    assert other.claims.get("each") is None


async def test_a_fire_past_its_starting_deadline_is_reported_through_the_gate(
    tmp_path: Path, clock: Clock
) -> None:
    rig = Rig(tmp_path, clock)
    rig.catalogs([sched("tenly", {"cron": "*/10 * * * *"}, starting_deadline="5s")])
    await rig.sync()
    rig.tick(seconds=30)
    clock.advance(minutes=24, seconds=20)
    restarted = rig.new_scheduler()
    await rig.sync(restarted)
    [late] = rig.tick(restarted)
    assert late.deadline_at is not None and late.deadline_at < clock()
    gate = check_deadline(late.deadline_at, clock())
    assert gate is not None and gate.exit_code == exitcodes.DEADLINE_PASSED


# --- gates and catalogs -------------------------------------------------------------------------
async def test_freeze_gates_local_fires(rig: Rig) -> None:
    until = T0 + timedelta(minutes=1)
    freeze = json.dumps({"until": until.isoformat(), "by": "ops", "reason": "incident"})
    rig.catalogs([sched("each", EVERY_SECOND)], freeze=freeze.encode())
    await rig.sync()
    assert rig.tick(seconds=1) == []
    rig.clock.now = until - timedelta(seconds=1)
    assert rig.tick() == []
    assert len(rig.tick(seconds=1)) == 1  # [from, until): until itself fires


async def test_unreadable_freeze_record_freezes(rig: Rig) -> None:
    rig.catalogs([sched("each", EVERY_SECOND)], freeze=b"garbage")
    await rig.sync()
    assert rig.tick(seconds=1) == []


async def test_missing_job_or_unresolved_digest_is_skipped_with_a_reason(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    schedules = [sched("no-job", EVERY_SECOND, job_id="ghost"),
                 sched("object", EVERY_SECOND, job_id="obj-job")]
    obj_job = job_doc("obj-job", script=None, script_object="tools/1.0")
    rig.catalogs(schedules, jobs={"obj-job": obj_job})
    await rig.sync()  # no connection: the digest cannot be resolved
    with caplog.at_level(logging.WARNING, logger="kanade.agent.scheduler"):
        assert rig.tick(seconds=1) == []
    assert "'ghost' is not in the job catalog" in caplog.text
    assert "script object 'tools/1.0'" in caplog.text
    rig.s.digests["tools/1.0"] = "ab" * 32  # resolved during a re-sync while connected
    [cmd] = rig.tick(seconds=1)
    assert (cmd.script_object, cmd.script_sha256) == ("tools/1.0", "ab" * 32)


async def test_offline_restart_never_fires_a_job_revoked_before(
    tmp_path: Path, clock: Clock
) -> None:
    first = Rig(tmp_path, clock)
    first.catalogs([sched("each", EVERY_SECOND)])
    first.fleet.revocations.values = {"job-1": b'{"by": "ops"}'}
    first.fleet.revocations.synced = True
    await first.sync()
    # Restarted with no broker: the agent's gate knows no revocations, the cache does.
    second = Rig(tmp_path, clock, host=first.host)
    await second.sync()
    assert list(second.s.registered) == ["each"]
    assert second.tick(seconds=1) == []
    # Once KV is read again (unrevoked meanwhile) it fires.
    second.catalogs([sched("each", EVERY_SECOND)])
    second.fleet.revocations.synced = True
    await second.sync()
    assert len(second.tick(seconds=1)) == 1


# --- the loop -----------------------------------------------------------------------------------
async def test_a_step_refreshes_a_changed_catalog_ticks_and_sleeps_until_the_next_fire(
    rig: Rig,
) -> None:
    rig.catalogs([sched("five", {"cron": "*/5 * * * * *"})])
    rig.s.mark_dirty()
    await rig.s.step()
    assert list(rig.s.registered) == ["five"]
    assert rig.s.next_delay(None, failed=False) == 5.0  # 10:00:30 → 10:00:35
    rig.clock.advance(seconds=5)
    await rig.s.step()  # nothing changed: no refresh, only the tick
    assert [c.schedule_id for c in rig.host.commands] == ["five"]
    assert rig.s.next_delay(None, failed=False) == 5.0


async def test_a_scheduler_stopped_during_its_refresh_fires_nothing(rig: Rig) -> None:
    rig.catalogs([sched("each", EVERY_SECOND)])
    await rig.sync()
    rig.clock.advance(seconds=1)  # an occurrence is due
    rig.s.mark_dirty()
    refresh = rig.s.refresh

    async def refresh_then_stop() -> None:
        await refresh()
        rig.s.stop()  # the agent shuts down while the catalogs are re-read

    rig.s.refresh = refresh_then_stop  # type: ignore[method-assign]
    await rig.s.step()
    assert rig.host.commands == []
