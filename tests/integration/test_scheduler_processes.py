"""The central scheduler as real processes: ``kanade-backend`` processes (killed with
SIGKILL and restarted), a real nats-server, real SQLite, real agents (a stub-exec swarm
through the agent's own intake/ledger/outbox code) and the ``kanade`` CLI.

Bounded: every wait polls a condition until a deadline; waiting for a fire time to pass
polls the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from kanade.bus import EmbeddedBroker, free_port
from kanade.core import subjects
from kanade.core.scheduling import exec_id_for, occurrence_id
from pgdb import db_env
from secured import authority_dir, connect_backend, session_authority, swarm_credentials
from stack import kill9, terminate

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

BIN = Path(sys.executable).parent
DEADLINE = 30.0

HELLO = {
    "id": "hello",
    "version": "1",
    "execute": {"shell": "sh", "script": "echo hello", "timeout": "30s"},
}


def _bin(name: str) -> str:
    return str(BIN / name)


def wait_for(check: Callable[[], Any], *, timeout: float = DEADLINE, what: str = "") -> Any:
    give_up = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= give_up:
            pytest.fail(f"not within {timeout}s: {what}")
        time.sleep(0.05)


def clock_past(moment: datetime, timeout: float = DEADLINE) -> None:
    wait_for(lambda: datetime.now(UTC) > moment, timeout=timeout, what=f"clock past {moment}")


def cron_at(moment: datetime) -> str:
    t = moment.astimezone(UTC)
    return f"{t.second} {t.minute} {t.hour} {t.day} {t.month} *"


def whole_second(seconds_from_now: float) -> datetime:
    t = datetime.now(UTC) + timedelta(seconds=seconds_from_now)
    return t.replace(microsecond=0) + timedelta(seconds=1)


@dataclass
class Backend:
    proc: subprocess.Popen[str]
    url: str
    log: Path

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0)

    def get(self, path: str, **params: Any) -> Any:
        with self.http() as h:
            r = h.get(path, params=params)
            r.raise_for_status()
            return r.json()

    def post(self, path: str, body: Any = None, **params: Any) -> httpx.Response:
        with self.http() as h:
            return h.post(path, json=body, params=params)

    def kill(self) -> None:
        kill9(self.proc)

    def stop(self) -> None:
        terminate(self.proc)

    def leads(self) -> bool:
        try:
            return bool(self.get("/api/scheduler").get("leader"))
        except httpx.HTTPError:
            return False


class Stack:
    def __init__(self, base: Path, db: str) -> None:
        self.base = base
        self.broker = EmbeddedBroker(base / "nats", security=session_authority().broker_security())
        self.broker.start(timeout=15)
        self.db = db  # a database URL: SQLite or PostgreSQL
        self.backends: list[Backend] = []
        self.others: list[subprocess.Popen[str]] = []

    def backend(self, *args: str, name: str = "backend") -> Backend:
        port = free_port()
        log = self.base / f"{name}-{len(self.backends)}.log"
        fh = open(log, "w")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [
                _bin("kanade-backend"),
                "run",
                "--nats-url",
                self.broker.url,
                "--authority",
                str(authority_dir()),
                "--http-port",
                str(port),
                "--lease-ttl",
                "2",
                *args,
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env=db_env(self.db),
        )
        b = Backend(proc, f"http://127.0.0.1:{port}", log)
        self.backends.append(b)

        def healthy() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"backend exited early:\n{log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                return bool(b.get("/health").get("broker"))
            return False

        wait_for(healthy, what="backend healthy")
        return b

    def swarm(self, n: int, *, prefix: str = "sim-") -> None:
        log = self.base / "swarm.log"
        creds = swarm_credentials(session_authority(), self.base / "swarm-trust")
        fh = open(log, "w")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [
                _bin("kanade-agent"),
                "swarm",
                "--agents",
                str(n),
                "--prefix",
                prefix,
                "--exec",
                "stub",
                "--nats-url",
                self.broker.url,
                "--data-dir",
                str(self.base / "swarm"),
                "--creds",
                str(creds.creds_file),
                "--ca",
                str(creds.ca_file),
                "--heartbeat-interval",
                "2",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.others.append(proc)
        wait_for(lambda: "swarm ready" in log.read_text(), what="swarm ready")

    def kanade(self, backend: Backend, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_bin("kanade"), *args, "--url", backend.url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def close(self) -> None:
        for p in self.others:
            terminate(p)
        for b in self.backends:
            b.stop()
        self.broker.stop()


@pytest.fixture
def stack(tmp_path: Path, store_url: str) -> Iterator[Stack]:
    s = Stack(tmp_path, store_url)
    try:
        yield s
    finally:
        s.close()


def executions(b: Backend, schedule_id: str) -> list[dict[str, Any]]:
    items = b.get("/api/executions", limit=1000)["items"]
    return [e for e in items if e["schedule_id"] == schedule_id]


def alive(b: Backend, n: int) -> bool:
    items = b.get("/api/agents", status="alive")["items"]
    return len(items) >= n


# --- reconcile with real agents ----------------------------------------------------------


def test_per_pc_once_fires_once_per_alive_pc_and_never_again(stack: Stack) -> None:
    b = stack.backend("--reconcile-poll", "1")
    assert b.post("/api/jobs", HELLO).status_code == 201
    stack.swarm(5)
    wait_for(lambda: alive(b, 5), what="5 agents alive")
    body = {
        "id": "inventory-once",
        "job_id": "hello",
        "when": {"per_pc": "once"},
        "target": {"all": True},
    }
    assert b.post("/api/schedules", body).status_code == 201

    def all_succeeded() -> bool:
        results = b.get("/api/results", job_id="hello", limit=1000)["items"]
        ok = {r["pc_id"] for r in results if r["exit_code"] == 0 and not r["skipped"]}
        return len(ok) == 5

    wait_for(all_succeeded, what="every pc succeeded once")
    fired_polls = len(executions(b, "inventory-once"))
    # Several more polls: nobody is fired again.
    polls_seen = b.get("/api/scheduler")
    assert polls_seen["leader"]
    deadline = datetime.now(UTC) + timedelta(seconds=4)
    clock_past(deadline)
    results = b.get("/api/results", job_id="hello", limit=1000)["items"]
    per_pc: dict[str, int] = {}
    for r in results:
        per_pc[r["pc_id"]] = per_pc.get(r["pc_id"], 0) + 1
    assert sorted(per_pc.values()) == [1] * 5, per_pc
    assert len(executions(b, "inventory-once")) == fired_polls
    assert all(
        e["initiated_by"] == "schedule:inventory-once" for e in executions(b, "inventory-once")
    )
    preview = b.get("/api/schedules/inventory-once/preview")
    assert {p["reason"] for p in preview["pcs"]} == {"succeeded"}
    assert len(preview["pcs"]) == 5


# --- restarts ------------------------------------------------------------------------------


def test_backend_killed_across_a_fire_time_applies_catchup(stack: Stack) -> None:
    late = ["--late-tolerance", "2"]  # a fire decided > 2 s late was missed by downtime
    b = stack.backend(*late)
    assert b.post("/api/jobs", HELLO).status_code == 201
    wait_for(b.leads, what="the first backend leads")
    # Far enough ahead that the kill below comes before the fires are prepared (2 s
    # before their instant): this test is about occurrences nobody touched before the
    # crash (a crash after preparing is the next test).
    t = whole_second(5)
    for sid, catchup in (("catch-once", "once"), ("catch-skip", "skip")):
        body = {
            "id": sid,
            "job_id": "hello",
            "when": {"cron": cron_at(t)},
            "target": {"pcs": ["pc-offline"]},
            "tz": "utc",
            "catchup": catchup,
        }
        assert b.post("/api/schedules", body).status_code == 201
    # Both are registered (their last_tick persisted) before the crash.
    wait_for(lambda: b.get("/api/scheduler").get("schedules") == 2, what="registered")
    b.kill()  # SIGKILL: no lease release, no clean shutdown
    clock_past(t + timedelta(seconds=3))
    b2 = stack.backend(*late)
    wait_for(b2.leads, what="the restarted backend takes the lease over")

    def decided() -> dict[str, Any] | None:
        once = b2.get("/api/schedules/catch-once")
        skip = b2.get("/api/schedules/catch-skip")
        if once["status"]["fired_count"] and skip["status"]["missed_count"]:
            return {"once": once, "skip": skip}
        return None

    got = wait_for(decided, what="catch-up decisions")
    (ex,) = executions(b2, "catch-once")
    assert ex["exec_id"] == exec_id_for(occurrence_id("catch-once", t))
    assert ex["initiated_by"] == "schedule:catch-once"
    assert got["once"]["decisions"][0]["reason"] == "caught_up"
    assert executions(b2, "catch-skip") == []
    assert got["skip"]["status"]["missed_count"] == 1
    assert got["skip"]["decisions"][0]["result"] == "missed"
    metrics = httpx.get(b2.url + "/metrics").text
    assert 'kanade_schedule_fires_total{result="missed"} 1.0' in metrics
    # Restart once more: the occurrence is not fired again.
    b2.stop()
    b3 = stack.backend(*late)
    wait_for(b3.leads, what="third backend leads")
    clock_past(datetime.now(UTC) + timedelta(seconds=2))
    assert len(executions(b3, "catch-once")) == 1


def test_backend_down_across_a_fire_time_misses_it_under_skip_however_short(
    stack: Stack,
) -> None:
    """Issue #14 item 5: with the default 60 s late tolerance, a backend SIGKILLed just
    before a fire time and back a few seconds after it. The tolerance covers a live
    scheduler's own lateness, not an outage: `catchup: skip` records the occurrence
    missed (never fires it), `catchup: once` runs it as the catch-up."""
    b = stack.backend()  # the default late tolerance (60 s)
    assert b.post("/api/jobs", HELLO).status_code == 201
    wait_for(b.leads, what="the first backend leads")
    t = whole_second(4)
    for sid, catchup in (("short-skip", "skip"), ("short-once", "once")):
        body = {
            "id": sid,
            "job_id": "hello",
            "when": {"cron": cron_at(t)},
            "target": {"pcs": ["pc-offline"]},
            "tz": "utc",
            "catchup": catchup,
        }
        assert b.post("/api/schedules", body).status_code == 201
    wait_for(lambda: b.get("/api/scheduler").get("schedules") == 2, what="registered")
    # Killed 1.5 s before the fire time: after the fires were prepared (2 s ahead), before
    # anything was published.
    clock_past(t - timedelta(seconds=1.5))
    b.kill()
    killed_at = datetime.now(UTC)
    assert killed_at < t, "killed after the fire time: the test proves nothing"
    clock_past(t + timedelta(milliseconds=200))
    b2 = stack.backend()
    wait_for(b2.leads, what="the restarted backend takes the lease over")

    def decided() -> dict[str, Any] | None:
        once = b2.get("/api/schedules/short-once")
        skip = b2.get("/api/schedules/short-skip")
        if once["status"]["fired_count"] and skip["decisions"]:
            return {"once": once, "skip": skip}
        return None

    got = wait_for(decided, what="the occurrence decided after the restart")
    back_after = (datetime.now(UTC) - t).total_seconds()
    assert back_after < 60, "back after the late tolerance: the test proves nothing"
    skip = got["skip"]
    assert executions(b2, "short-skip") == []
    assert (skip["status"]["fired_count"], skip["status"]["missed_count"]) == (0, 1)
    assert [d["result"] for d in skip["decisions"]] == ["missed"]
    assert skip["decisions"][0]["reason"] == "catchup_skip"
    # (Prepared by the killed backend, the `once` occurrence is published by the new one:
    # counted once, whichever of the two claimed its row.)
    (ex,) = executions(b2, "short-once")
    assert ex["exec_id"] == exec_id_for(occurrence_id("short-once", t))
    assert got["once"]["status"]["fired_count"] == 1
    # Exactly one command stored: the catch-up of `once`; nothing of `skip`.
    assert _command_seq(stack) == 1
    print(json.dumps({
        "fault": "backend_down_across_a_fire_time",
        "down_before_s": round((t - killed_at).total_seconds(), 3),
        "decided_after_s": round(back_after, 3),
        "skip_fired": skip["status"]["fired_count"],
        "skip_missed": skip["status"]["missed_count"],
        "once_caught_up": got["once"]["status"]["fired_count"],
    }))


@pytest.mark.slow
def test_backend_down_5s_before_a_daily_calendar_and_back_41s_after_skips_it(
    stack: Stack,
) -> None:
    """Issue #14 item 5 as reported: a daily `calendar: {at: HH:MM}` (minute precision),
    the backend SIGKILLed 5 s before it and restarted 41 s after, three agents. `skip`
    runs on no pc and is recorded missed; `once` runs on every pc, once."""
    b = stack.backend()
    assert b.post("/api/jobs", HELLO).status_code == 201
    stack.swarm(3)
    wait_for(lambda: alive(b, 3), what="3 agents alive")
    now = datetime.now(UTC)
    t = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if (t - now).total_seconds() < 10:
        t += timedelta(minutes=1)
    for sid, catchup in (("daily-skip", "skip"), ("daily-once", "once")):
        body = {
            "id": sid,
            "job_id": "hello",
            "when": {"calendar": {"at": t.strftime("%H:%M")}},
            "target": {"all": True},
            "tz": "utc",
            "catchup": catchup,
        }
        assert b.post("/api/schedules", body).status_code == 201
    wait_for(lambda: b.get("/api/scheduler").get("schedules") == 2, what="registered")
    clock_past(t - timedelta(seconds=5), timeout=90)
    b.kill()
    clock_past(t + timedelta(seconds=41), timeout=60)
    b2 = stack.backend()
    wait_for(b2.leads, what="the restarted backend takes the lease over")

    def decided() -> dict[str, Any] | None:
        skip = b2.get("/api/schedules/daily-skip")
        results = b2.get("/api/results", job_id="hello", limit=1000)["items"]
        if skip["decisions"] and len(results) >= 3:
            return {"skip": skip, "results": results}
        return None

    got = wait_for(decided, what="the occurrence decided, `once` run on every pc")
    assert (datetime.now(UTC) - t).total_seconds() < 60 + 15  # decided near the tolerance
    skip_execs = executions(b2, "daily-skip")
    (once_exec,) = executions(b2, "daily-once")
    once_pcs = [r["pc_id"] for r in got["results"] if r["exec_id"] == once_exec["exec_id"]]
    report = {
        "fault": "backend_down_5s_before_a_calendar_41s_after",
        "sent": len(skip_execs) + 1,
        "executed": len(once_pcs),
        "duplicated": len(once_pcs) - len(set(once_pcs)),
        "lost": 3 - len(set(once_pcs)),
        "skip_fired": got["skip"]["status"]["fired_count"],
        "skip_missed": got["skip"]["status"]["missed_count"],
    }
    print(json.dumps(report))
    assert skip_execs == [] and report["skip_fired"] == 0 and report["skip_missed"] == 1
    assert [d["result"] for d in got["skip"]["decisions"]] == ["missed"]
    assert report["executed"] == 3 and report["duplicated"] == 0 and report["lost"] == 0


def test_backend_killed_between_preparing_a_fire_and_its_instant(stack: Stack) -> None:
    """A fire is prepared (exec row claimed, commands built) 2 s before its instant. A
    backend killed in between published nothing; the restarted one finds the claim and
    publishes the occurrence — once, counted once."""
    b = stack.backend()
    assert b.post("/api/jobs", HELLO).status_code == 201
    wait_for(b.leads, what="the first backend leads")
    t = whole_second(4)
    body = {
        "id": "prepared",
        "job_id": "hello",
        "when": {"cron": cron_at(t)},
        "target": {"pcs": ["pc-x"]},
        "tz": "utc",
    }
    assert b.post("/api/schedules", body).status_code == 201
    wait_for(lambda: executions(b, "prepared"), what="the fire prepared: its row claimed")
    b.kill()
    assert datetime.now(UTC) < t, "killed after the instant: the test proves nothing"
    assert _command_seq(stack) == 0
    b2 = stack.backend()
    wait_for(b2.leads, what="the restarted backend takes the lease over")
    wait_for(lambda: _command_seq(stack) == 1, what="the occurrence published after restart")
    clock_past(max(datetime.now(UTC), t) + timedelta(seconds=2))
    assert _command_seq(stack) == 1
    (ex,) = executions(b2, "prepared")
    assert ex["exec_id"] == exec_id_for(occurrence_id("prepared", t))
    st = b2.get("/api/schedules/prepared")
    assert st["status"]["fired_count"] == 1
    assert {d["result"] for d in st["decisions"]} == {"fired", "duplicate"}


def test_two_backends_one_broker_every_occurrence_dispatched_once(stack: Stack) -> None:
    a = stack.backend(name="a")
    assert a.post("/api/jobs", HELLO).status_code == 201
    wait_for(a.leads, what="a leads")
    b = stack.backend(name="b")

    def one_leads_the_other_sees_it() -> bool:
        # Either may hold the lease by now: with the tests' 2 s lease a loaded machine can
        # delay a's renewal past it while b starts. What matters is one leader, seen.
        leading = [x for x in (a, b) if x.leads()]
        if len(leading) != 1:
            return False
        other = b if leading[0] is a else a
        return bool(other.get("/api/scheduler")["other_holder"])

    wait_for(one_leads_the_other_sees_it, what="one backend leads, the other sees its lease")
    start = whole_second(1)
    body = {
        "id": "tick",
        "job_id": "hello",
        "when": {"cron": "* * * * * *"},
        "target": {"pcs": ["pc-x"]},
        "tz": "utc",
    }
    assert a.post("/api/schedules", body).status_code == 201
    clock_past(start + timedelta(seconds=3))
    leader, standby = (a, b) if a.leads() else (b, a)
    leader.kill()  # the standby must take over after the lease TTL (2 s)
    wait_for(standby.leads, what="failover")
    clock_past(datetime.now(UTC) + timedelta(seconds=3))
    assert standby.post("/api/schedules/tick/disable").status_code == 200
    clock_past(datetime.now(UTC) + timedelta(seconds=1))
    execs = executions(standby, "tick")
    nominals = [e["nominal_time"] for e in execs]
    assert len(nominals) == len(set(nominals)) >= 5
    for e in execs:
        nominal = datetime.fromisoformat(e["nominal_time"].replace("Z", "+00:00"))
        assert e["exec_id"] == exec_id_for(occurrence_id("tick", nominal))
    # One stored command per occurrence (the stream's sequence counts every stored message,
    # also those superseded since: a duplicate publish would have advanced it).
    st = standby.get("/api/schedules/tick", decisions=200)
    assert st["status"]["fired_count"] == len(execs)
    seq = _command_seq(stack)
    assert seq == len(execs), (seq, len(execs))


def _command_seq(stack: Stack) -> int:
    async def go() -> int:
        bus = await connect_backend(stack.broker.url, session_authority())
        try:
            info = await bus.js.stream_info(subjects.STREAM_COMMANDS)
            return int(info.state.last_seq)
        finally:
            await bus.close()

    return asyncio.run(go())


# --- CLI ------------------------------------------------------------------------------------


def test_cli_schedule_verbs(stack: Stack, tmp_path: Path) -> None:
    b = stack.backend()
    assert b.post("/api/jobs", HELLO).status_code == 201
    good = tmp_path / "nightly.yaml"
    good.write_text(
        "id: nightly\njob_id: hello\nwhen:\n  calendar: {at: '02:00', days: [mon-fri]}\n"
        "target: {all: true}\ntz: Europe/Berlin\nconstraints: {skip_dates: [2030-01-01]}\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: bad\njob_id: nope\nwhen: {calendar: {at: '25:00'}}\ntarget: {}\nx: 1\n")
    per = tmp_path / "per.yaml"
    per.write_text("id: per\njob_id: hello\nwhen: {per_pc: {every: 1d}}\ntarget: {pcs: [pc-1]}\n")

    r = stack.kanade(b, "schedule", "validate", str(good))
    assert r.returncode == 0 and "ok" in r.stdout
    r = stack.kanade(b, "schedule", "validate", str(bad))
    assert r.returncode == 1
    assert "when.calendar.at" in r.stderr and "x: unknown field" in r.stderr
    r = stack.kanade(b, "schedule", "create", str(bad))
    assert r.returncode == 1 and "when.calendar.at" in r.stderr
    nojob = tmp_path / "nojob.yaml"
    nojob.write_text("id: p2\njob_id: nope\nwhen: {per_pc: once}\ntarget: {pcs: [pc-1]}\n")
    r = stack.kanade(b, "schedule", "create", str(nojob))
    assert r.returncode == 1 and "job_id" in r.stderr and "nope" in r.stderr

    r = stack.kanade(b, "schedule", "create", str(good), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"]["next_fire_local"][11:16] == "02:00"
    assert stack.kanade(b, "schedule", "create", str(per)).returncode == 0
    r = stack.kanade(b, "schedule", "list", "--json")
    assert [json.loads(x)["id"] for x in r.stdout.splitlines()] == ["nightly", "per"]
    r = stack.kanade(b, "schedule", "list")
    assert r.returncode == 0 and "nightly" in r.stdout and "0/0/0" in r.stdout
    r = stack.kanade(b, "schedule", "show", "nightly")
    assert r.returncode == 0 and "next fire" in r.stdout
    r = stack.kanade(b, "schedule", "preview", "nightly", "-n", "3", "--json")
    assert len(json.loads(r.stdout)["fires"]) == 3
    r = stack.kanade(b, "schedule", "preview", "per")
    assert r.returncode == 0 and "pc-1" in r.stdout and "offline" in r.stdout
    r = stack.kanade(b, "schedule", "disable", "nightly", "--cascade", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["enabled"] is False and out["revoked"]["job_id"] == "hello"
    r = stack.kanade(b, "schedule", "enable", "nightly")
    assert r.returncode == 0 and "enabled" in r.stdout
    r = stack.kanade(b, "schedule", "delete", "per")
    assert r.returncode == 0
    r = stack.kanade(b, "schedule", "show", "per")
    assert r.returncode == 1 and "not found" in r.stderr
    r = stack.kanade(b, "agents")
    assert r.returncode == 0 and "schedules" in r.stdout


@pytest.mark.slow
def test_a_calendar_at_the_next_minute_fires_exactly_once(stack: Stack) -> None:
    """A real ``calendar: {at: HH:MM}`` (minute precision): waits for a minute boundary."""
    b = stack.backend()
    assert b.post("/api/jobs", HELLO).status_code == 201
    now = datetime.now(UTC)
    t = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if (t - now).total_seconds() < 3:
        t += timedelta(minutes=1)
    body = {
        "id": "cal",
        "job_id": "hello",
        "tz": "utc",
        "target": {"pcs": ["pc-1"]},
        "when": {"calendar": {"at": t.strftime("%Y-%m-%d %H:%M")}},
    }
    assert b.post("/api/schedules", body).status_code == 201
    (ex,) = wait_for(lambda: executions(b, "cal"), timeout=150, what="calendar fire")
    assert ex["nominal_time"].startswith(t.strftime("%Y-%m-%dT%H:%M:00"))
    clock_past(t + timedelta(seconds=3))
    assert len(executions(b, "cal")) == 1
