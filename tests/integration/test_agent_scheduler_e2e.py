"""The agent's local scheduler (SPEC §3.6) end to end: real ``kanade-agent`` processes, a
real nats-server, schedules and jobs written straight into KV (``kanade_schedules`` /
``kanade_jobs``, the layout the backend writes).

Observed only through the wire (KANADE_RESULTS, pings/heartbeats) and the agent's log
and data dir. No mocks; every wait is bounded and polls a condition.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from agent_harness import (
    AgentFleet,
    AgentProcess,
    HarnessError,
    ResultsCollector,
    barrier,
    eventually,
    ping,
    wait_agent_ready,
)

from kanade.bus import Bus, EmbeddedBroker
from kanade.core import exitcodes, subjects
from kanade.core.instants import system_clock
from kanade.core.models.schedule import Schedule
from kanade.core.models.wire import Result
from kanade.core.scheduling import expected_version
from kanade.core.validation import parse_job, parse_schedule

EVERY_SECOND = "* * * * * *"  # 6 fields: seconds first


# --- KV helpers (the backend's layout) ----------------------------------------------------------
async def put_job(bus: Bus, job_id: str, script: str, *, timeout: str = "30s") -> None:
    job = parse_job(
        {
            "id": job_id,
            "version": "1",
            "execute": {"shell": "sh", "script": script, "timeout": timeout},
        }
    )
    kv = await bus.kv(subjects.KV_JOBS)
    doc = job.model_dump(mode="json", by_alias=True, exclude_none=True)
    await kv.put(job_id, json.dumps(doc, sort_keys=True).encode())


def make_schedule(schedule_id: str, job_id: str, when: dict[str, Any], **fields: Any) -> Schedule:
    body: dict[str, Any] = {
        "id": schedule_id,
        "job_id": job_id,
        "when": when,
        "target": {"pcs": ["pc-1"]},
        "runs_on": "agent",
        "tz": "utc",
    }
    body.update(fields)
    return parse_schedule(body)


async def put_schedule(bus: Bus, schedule: Schedule) -> None:
    kv = await bus.kv(subjects.KV_SCHEDULES)
    await kv.put(schedule.id, json.dumps(schedule.model_dump(mode="json")).encode())


async def delete_schedule(bus: Bus, schedule_id: str) -> None:
    kv = await bus.kv(subjects.KV_SCHEDULES)
    await kv.delete(schedule_id)


def of(schedule_id: str) -> Any:
    return lambda r: r.schedule_id == schedule_id


def nominals(collector: ResultsCollector, schedule_id: str) -> list[datetime]:
    return sorted(
        r.nominal_time
        for r in collector.results
        if r.schedule_id == schedule_id and r.nominal_time is not None
    )


def assert_each_once(collector: ResultsCollector, schedule_id: str) -> None:
    counts = Counter(nominals(collector, schedule_id))
    dups = {n: c for n, c in counts.items() if c > 1}
    assert not dups, f"occurrences reported more than once: {dups}\n{collector.summary()}"
    rids = Counter(r.request_id for r in collector.results if r.schedule_id == schedule_id)
    assert all(c == 1 for c in rids.values()), collector.summary()


async def wait_down(agent: AgentProcess, seconds: float) -> None:
    since = time.monotonic()

    def done() -> bool:
        if not agent.is_running():
            raise HarnessError("agent died while the broker was down\n" + agent.log_tail())
        return time.monotonic() - since >= seconds

    await eventually(done, timeout=seconds + 10, what=f"broker down for {seconds}s")


# --- 1. firing while the broker is down ----------------------------------------------------------
async def test_cron_keeps_firing_while_the_broker_is_down(
    nats_server: EmbeddedBroker, bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    await put_job(bus, "tick", 'echo "tick $KANADE_TEST_PC"')
    await put_schedule(bus, make_schedule("each-second", "tick", {"cron": EVERY_SECOND}))
    await collector.wait(of("each-second"), 2, diagnostics=agent.log_tail)

    nats_server.kill()
    down_from = system_clock()
    await wait_down(agent, 5.0)
    down_until = system_clock()
    nats_server.start()

    # Every second of the outage fired locally; the results arrive once the broker is back.
    expected = [
        down_from.replace(microsecond=0) + timedelta(seconds=i)
        for i in range(2, int((down_until - down_from).total_seconds()))
    ]
    assert len(expected) >= 3

    def outage_covered() -> bool:
        have = set(nominals(collector, "each-second"))
        return all(n in have for n in expected)

    await eventually(
        outage_covered,
        timeout=45,
        what="results of every outage second",
        diagnostics=lambda: collector.summary() + "\n" + agent.log_tail(),
    )
    await barrier(bus.js, bus.nc, collector, agent, timeout=30)
    assert_each_once(collector, "each-second")
    for r in collector.results_for(pc="pc-1", job="tick"):
        assert (r.exit_code, r.skipped, r.stdout) == (0, False, "tick pc-1\n")
        assert r.schedule_id == "each-second" and r.nominal_time is not None
        assert r.started_at is not None and r.started_at >= r.nominal_time


async def test_agent_restarted_while_broker_is_down_keeps_firing_from_its_cache(
    nats_server: EmbeddedBroker, bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    await put_job(bus, "tick", "echo tick")
    await put_schedule(bus, make_schedule("each-second", "tick", {"cron": EVERY_SECOND}))
    await collector.wait(of("each-second"), 2, diagnostics=agent.log_tail)

    nats_server.kill()
    await agent.stop()
    agent.start()  # no broker: only the on-disk catalog cache knows the schedule
    restarted_at = system_clock()
    await wait_down(agent, 4.0)

    # The broker comes back only once the restarted agent has fired from its cache (on a
    # loaded machine its start-up alone can take longer than any fixed window).
    def fired_offline() -> bool:
        text = agent.log_text().split("--- harness: start #2")[-1]
        return "schedule each-second: fired occurrence" in text

    await eventually(fired_offline, timeout=60, what="a fire after the offline restart",
                     diagnostics=agent.log_tail)  # fmt: skip
    broker_back_at = system_clock()
    nats_server.start()

    def fired_after_restart() -> list[Result]:
        return [
            r
            for r in collector.results
            if r.schedule_id == "each-second"
            and r.nominal_time is not None
            and restarted_at < r.nominal_time <= broker_back_at
        ]

    await eventually(
        fired_after_restart,
        timeout=45,
        what="fires of the offline restart",
        diagnostics=lambda: collector.summary() + "\n" + agent.log_tail(),
    )
    await barrier(bus.js, bus.nc, collector, agent, timeout=30)
    assert_each_once(collector, "each-second")


# --- 2. per_pc once across a restart; a skip never counts ----------------------------------------
POLL_S = 2.0


@pytest.mark.timeout(180)
async def test_per_pc_once_success_survives_restart_and_skips_never_count(
    bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    revocations = await bus.kv(subjects.KV_REVOCATIONS)
    await put_job(bus, "setup", "echo installed")
    await revocations.put("setup", b'{"by": "test", "reason": "not yet"}')
    # Polls every 2 s, not the default minute: the skipped poll is retried at the next one.
    agent = fleet.add("pc-1", extra_args=["--reconcile-poll", str(POLL_S)])
    await wait_agent_ready(bus.nc, agent)
    successes = agent.data_dir / "scheduler" / "successes.json"

    await put_schedule(bus, make_schedule("install", "setup", {"per_pc": "once"}))
    # Registration evaluates the current poll at once: the revoked job is skipped (126).
    [skipped] = await collector.wait(of("install"), diagnostics=agent.log_tail)
    assert (skipped.exit_code, skipped.skipped) == (exitcodes.REVOKED, True)
    assert not successes.exists() or "install" not in successes.read_text()

    # The skip did not count: the next poll fires again, and now the job runs.
    await revocations.delete("setup")
    ok = await collector.wait(
        lambda r: r.schedule_id == "install" and r.exit_code == 0,
        timeout=POLL_S + 30,
        diagnostics=agent.log_tail,
    )
    assert ok[0].stdout == "installed\n" and not ok[0].skipped
    await eventually(
        lambda: successes.exists() and "install" in successes.read_text(),
        what="success persisted",
        diagnostics=agent.log_tail,
    )

    await agent.stop()
    agent.start()
    await wait_agent_ready(bus.nc, agent)

    # Right after the restart the poll is evaluated again, and holds: succeeded once.
    def held_after_restart() -> bool:
        text = agent.log_text().split("--- harness: start #2")[-1]
        return "schedule install: poll" in text and "not firing: succeeded at" in text

    await eventually(
        held_after_restart, what="post-restart poll decided 'succeeded'", diagnostics=agent.log_tail
    )
    await barrier(bus.js, bus.nc, collector, agent)
    runs = [r for r in collector.results if r.schedule_id == "install" and not r.skipped]
    assert len(runs) == 1, collector.summary()


# --- 3. in-flight claims -------------------------------------------------------------------------
async def test_a_run_longer_than_the_interval_is_never_run_in_parallel(
    bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    await put_job(bus, "slow", "sleep 3; echo done", timeout="20s")
    await put_schedule(bus, make_schedule("slow-each-second", "slow", {"cron": EVERY_SECOND}))
    results = await collector.wait(
        of("slow-each-second"), 3, timeout=30, diagnostics=agent.log_tail
    )
    await delete_schedule(bus, "slow-each-second")

    runs = sorted(results, key=lambda r: r.started_at or r.finished_at)
    for earlier, later in itertools.pairwise(runs):
        assert later.started_at is not None and earlier.finished_at <= later.started_at, (
            f"runs overlap: {earlier.request_id} and {later.request_id}\n{collector.summary()}"
        )
        assert later.nominal_time is not None and earlier.nominal_time is not None
        assert later.nominal_time - earlier.nominal_time >= timedelta(seconds=3)
    assert all((r.exit_code, r.skipped) == (0, False) for r in runs), collector.summary()
    assert "still holds the claim" in agent.log_text()
    assert_each_once(collector, "slow-each-second")


# --- 4. group membership -------------------------------------------------------------------------
async def test_group_change_reevaluates_the_schedule_set(bus: Bus, fleet: AgentFleet) -> None:
    yearly = {"cron": "0 0 1 1 *"}
    catalog = [
        make_schedule("for-all", "j", yearly, target={"all": True}),
        make_schedule("for-newgroup", "j", yearly, target={"groups": ["newgroup"]}),
        make_schedule("for-other", "j", yearly, target={"groups": ["other"]}),
        make_schedule("central", "j", yearly, target={"all": True}, runs_on="backend"),
        make_schedule("off", "j", yearly, target={"all": True}, enabled=False),
    ]
    for s in catalog:
        await put_schedule(bus, s)
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)

    without = expected_version(catalog, "pc-1", [])
    with_group = expected_version(catalog, "pc-1", ["newgroup"])
    assert without != with_group

    async def reported(version: str) -> bool:
        return (await ping(bus.nc, "pc-1")).schedule_set_version == version

    await eventually(
        lambda: reported(without), what="initial schedule set", diagnostics=agent.log_tail
    )
    groups = await bus.kv(subjects.KV_GROUPS)
    t0 = time.monotonic()
    await groups.put("pc-1", b'["newgroup"]')
    await eventually(
        lambda: reported(with_group),
        timeout=10,
        what="set after joining newgroup",
        diagnostics=agent.log_tail,
    )
    joined_in = time.monotonic() - t0
    await groups.delete("pc-1")
    await eventually(
        lambda: reported(without),
        timeout=10,
        what="set after leaving newgroup",
        diagnostics=agent.log_tail,
    )
    assert joined_in < 5.0
    # Heartbeats (not only pings) carry it: the periodic one after the change.
    sub = await bus.nc.subscribe(subjects.heartbeat_subject("pc-1"))
    try:
        msg = await sub.next_msg(timeout=10)
    finally:
        await sub.unsubscribe()
    assert json.loads(msg.data)["schedule_set_version"] == without


# --- 5. delete and edit --------------------------------------------------------------------------
async def test_deleted_schedule_stops_and_edited_one_applies_the_new_definition(
    bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    await put_job(bus, "clock-job", "echo clock")
    await put_job(bus, "job-a", "echo a")
    await put_job(bus, "job-b", "echo b")
    clock = make_schedule("clock", "clock-job", {"cron": EVERY_SECOND})
    await put_schedule(bus, clock)
    await put_schedule(bus, make_schedule("subject", "job-a", {"cron": EVERY_SECOND}))
    await collector.wait(
        lambda r: r.schedule_id == "subject" and r.job_id == "job-a", 2, diagnostics=agent.log_tail
    )

    # Edit: the same schedule id now runs job-b.
    await put_schedule(bus, make_schedule("subject", "job-b", {"cron": EVERY_SECOND}))
    await collector.wait(
        lambda r: r.schedule_id == "subject" and r.job_id == "job-b", 2, diagnostics=agent.log_tail
    )
    a_last = max(
        r.nominal_time for r in collector.results_for(job="job-a") if r.nominal_time is not None
    )
    b_first = min(
        r.nominal_time for r in collector.results_for(job="job-b") if r.nominal_time is not None
    )
    assert a_last < b_first
    assert all(r.stdout == "b\n" for r in collector.results_for(job="job-b"))

    # Delete: once the agent applied the set without it, nothing of it fires any more.
    await delete_schedule(bus, "subject")
    only_clock = expected_version([clock], "pc-1", [])

    async def applied() -> bool:
        return (await ping(bus.nc, "pc-1")).schedule_set_version == only_clock

    await eventually(applied, timeout=10, what="set without 'subject'", diagnostics=agent.log_tail)
    applied_at = system_clock()
    # The clock schedule keeps firing: once its later occurrences are in, everything the
    # agent queued before them is too (the outbox publishes in order).
    await collector.wait(
        lambda r: (
            r.schedule_id == "clock"
            and r.nominal_time is not None
            and r.nominal_time >= applied_at + timedelta(seconds=2)
        ),
        timeout=20,
        diagnostics=agent.log_tail,
    )
    late = [
        r
        for r in collector.results
        if r.schedule_id == "subject" and r.nominal_time is not None and r.nominal_time > applied_at
    ]
    assert not late, collector.summary()
    assert_each_once(collector, "subject")
    assert_each_once(collector, "clock")


# --- 6. catchup across a short agent outage ------------------------------------------------------
def _cron_at(moment: datetime) -> str:
    """A 6-field cron matching ``moment`` (UTC, whole second) only, this year."""
    return f"{moment.second} {moment.minute} {moment.hour} {moment.day} {moment.month} *"


async def test_an_occurrence_the_agent_was_down_for_is_missed_under_skip_however_short(
    bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    """Issue #14 item 5, agent side: killed 1.5 s before a fire time, back right after it
    (well inside the 60 s late tolerance): `catchup: skip` records the occurrence missed
    and never runs it; `catchup: once` runs it as the catch-up."""
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    await put_job(bus, "tick", "echo tick")
    t = (system_clock() + timedelta(seconds=5)).replace(microsecond=0) + timedelta(seconds=1)
    catalog = [
        make_schedule("short-skip", "tick", {"cron": _cron_at(t)}, catchup="skip"),
        make_schedule("short-once", "tick", {"cron": _cron_at(t)}, catchup="once"),
    ]
    for s in catalog:
        await put_schedule(bus, s)
    wanted = expected_version(catalog, "pc-1", [])

    async def applied() -> bool:
        return (await ping(bus.nc, "pc-1")).schedule_set_version == wanted

    await eventually(applied, what="both schedules applied", diagnostics=agent.log_tail)
    await eventually(lambda: system_clock() >= t - timedelta(seconds=1.5), timeout=10,
                     what="1.5 s before the fire time")  # fmt: skip
    await agent.kill9()
    killed_at = system_clock()
    assert killed_at < t, "killed after the fire time: the test proves nothing"
    await eventually(lambda: system_clock() > t + timedelta(milliseconds=200), timeout=10,
                     what="the fire time passed")  # fmt: skip
    agent.start()
    await wait_agent_ready(bus.nc, agent)
    [caught_up] = await collector.wait(of("short-once"), diagnostics=agent.log_tail)
    assert caught_up.nominal_time == t
    await barrier(bus.js, bus.nc, collector, agent)
    back_after = (system_clock() - t).total_seconds()
    assert back_after < 60, "back after the late tolerance: the test proves nothing"
    ran = [r for r in collector.results if r.schedule_id == "short-skip"]
    print(json.dumps({
        "fault": "agent_down_across_a_fire_time",
        "down_before_s": round((t - killed_at).total_seconds(), 3),
        "decided_after_s": round(back_after, 3),
        "skip_executed": len(ran),
        "once_caught_up": len(collector.results_for(job="tick")) - len(ran),
    }))
    assert ran == [], collector.summary()
    assert_each_once(collector, "short-once")
    after_restart = agent.log_text().split("--- harness: start #2")[-1]
    assert "schedule short-once: catching up occurrence" in after_restart
    assert "schedule short-skip: 1 occurrence(s) missed" in after_restart, agent.log_tail()
