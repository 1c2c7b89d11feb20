"""The agent end to end: real ``kanade-agent`` processes against a real nats-server.

Every test drives agents only through the wire contract (commands on the command
stream, kill/ping on core NATS) and observes them only through KANADE_RESULTS, the
outputs object store, pings and the files their scripts write. No mocks; no sleeps
as synchronisation (see ``agent_harness``); every process is reaped on teardown.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import platform
import re
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
from agent_harness import (
    AgentFleet,
    HarnessError,
    Outgoing,
    ResultsCollector,
    barrier,
    build_command,
    eventually,
    is_barrier,
    ping,
    process_gone,
    publish,
    send_kill,
    wait_agent_ready,
)

from kanade import __version__
from kanade.backend.workers.provisioning import ConsumerProvisioner
from kanade.bus import Bus, EmbeddedBroker, ensure_topology
from kanade.core import exitcodes, subjects
from kanade.core.models.wire import Result
from kanade.security.authority import Authority
from secured import connect_backend, issue_agent

MiB = 1024 * 1024
INLINE_CAP = 256 * 1024


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def work_counts(collector: ResultsCollector) -> dict[tuple[str, str], int]:
    return {k: v for k, v in collector.count_by_pc_job().items() if not k[1].startswith("barrier-")}


# --- 1. addressing ---------------------------------------------------------------------------
async def test_round_trip_to_all_group_and_pc(
    bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    web1, web2, db1 = (
        fleet.add("web-1", ["web"]),
        fleet.add("web-2", ["web"]),
        fleet.add("db-1", ["db"]),
    )
    await asyncio.gather(*(wait_agent_ready(bus.nc, a) for a in (web1, web2, db1)))

    def echo(job: str, scope: subjects.Scope, target: str | None) -> Outgoing:
        return build_command(job, f'echo "{job}@$KANADE_TEST_PC"', scope=scope, target=target)

    cmds = [
        echo("to-all", "all", None),
        echo("to-web", "group", "web"),
        echo("to-db1", "pc", "db-1"),
    ]
    for out in cmds:
        await publish(bus.js, out)
    expected = {
        ("web-1", "to-all"),
        ("web-2", "to-all"),
        ("db-1", "to-all"),
        ("web-1", "to-web"),
        ("web-2", "to-web"),
        ("db-1", "to-db1"),
    }
    sent = {c.request_id for c in cmds}
    await collector.wait(
        lambda r: r.request_id in sent, len(expected), diagnostics=fleet.diagnostics
    )
    # Every agent has now processed every command published before its barrier.
    for agent in (web1, web2, db1):
        await barrier(bus.js, bus.nc, collector, agent)

    assert work_counts(collector) == dict.fromkeys(expected, 1), collector.summary()
    for r in collector.results_for():
        if not is_barrier(r):
            assert (r.exit_code, r.skipped) == (0, False)
            assert r.stdout == f"{r.job_id}@{r.pc_id}\n"
            assert r.stdout_bytes == len(r.stdout) and r.stdout_ref is None


# --- 2. exit codes, timeout, stderr --------------------------------------------------------------
async def test_timeout_nonzero_exit_and_stderr(
    tmp_path: Path, bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    pidfile = tmp_path / "slow.pid"
    slow = build_command(
        "slow",
        'echo $$ > "$PIDFILE"; sleep 60',
        target="pc-1",
        timeout_s=1,
        env={"PIDFILE": str(pidfile)},
    )
    failing = build_command("failing", "echo out; echo oops >&2; exit 3", target="pc-1")
    await publish(bus.js, slow)
    await publish(bus.js, failing)

    r = await collector.wait_for_request(failing, "pc-1")
    assert (r.exit_code, r.skipped, r.stdout, r.stderr) == (3, False, "out\n", "oops\n")
    assert r.stderr_bytes == 5 and r.note is None

    t = await collector.wait_for_request(slow, "pc-1")
    assert (t.exit_code, t.skipped) == (exitcodes.KILLED, False)
    assert t.note is not None and "timeout after 1s" in t.note
    assert t.started_at is not None and t.finished_at - t.started_at < timedelta(seconds=10)
    # The timeout ended the script, not just reported it.
    script_pid = int(pidfile.read_text())
    await eventually(lambda: process_gone(script_pid), what="timed-out script gone")


# --- 3. agent before broker ----------------------------------------------------------------------
async def test_agent_started_before_the_broker(tmp_path: Path, authority: Authority) -> None:
    # ports chosen, nothing listening yet
    broker = EmbeddedBroker(tmp_path / "late-nats", security=authority.broker_security())
    fleet = AgentFleet(tmp_path / "agents", broker.url, authority)
    b: Bus | None = None
    collector: ResultsCollector | None = None
    provisioner = ConsumerProvisioner()
    try:
        agent = fleet.add("early-1")
        # The agent is up and has already failed to reach the broker at least once.
        await eventually(
            lambda: "nats connect attempt" in agent.log_text(),
            what="agent retrying the connect",
            diagnostics=agent.log_tail,
        )
        assert agent.is_running()
        broker.start()
        b = await connect_backend(broker.url, authority, name="pytest-late")
        await asyncio.wait_for(ensure_topology(b.js), 30)
        await provisioner.subscribe(b)
        collector = await ResultsCollector(b.nc).start()
        await wait_agent_ready(b.nc, agent, timeout=30)
        out = build_command("hello", "echo hello", target="early-1")
        await publish(b.js, out)
        r = await collector.wait_for_request(out, "early-1", diagnostics=agent.log_tail)
        assert (r.exit_code, r.stdout) == (0, "hello\n")
    finally:
        try:
            await fleet.aclose()
        finally:
            fleet.close()
            if collector is not None:
                await collector.close()
            await provisioner.close()
            if b is not None:
                await b.close()
            broker.stop()


async def test_agent_without_credentials_stays_up_until_enrolled(
    bus: Bus, fleet: AgentFleet, collector: ResultsCollector, authority: Authority
) -> None:
    agent = fleet.add("late-enrol", start=False)
    agent.start(enrol=False)
    creds = agent.data_dir / "trust" / "agent.creds"
    await eventually(
        lambda: all(s in agent.log_text() for s in (str(creds), "kanade-agent enroll URL TOKEN")),
        what="the agent naming the missing credential and how to get one",
        diagnostics=agent.log_tail,
    )
    assert agent.is_running()
    issue_agent(authority, agent.pc_id, agent.data_dir)  # enrolled: it connects on its own
    await wait_agent_ready(bus.nc, agent, timeout=30)
    out = build_command("hello", "echo enrolled", target="late-enrol")
    await publish(bus.js, out)
    r = await collector.wait_for_request(out, "late-enrol", diagnostics=agent.log_tail)
    assert (r.exit_code, r.stdout) == (0, "enrolled\n")


# --- 4. offline queue, superseding, ledger dedup ------------------------------------------------
async def test_offline_delivery_supersedes_and_ledger_dedups(
    tmp_path: Path, bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    a1, a2, a3 = fleet.add("pc-1", ["web"]), fleet.add("pc-2", ["web"]), fleet.add("pc-3")
    agents = (a1, a2, a3)
    # First start: enrolment + durable consumers exist; then everyone goes away.
    await asyncio.gather(*(wait_agent_ready(bus.nc, a) for a in agents))
    await asyncio.gather(*(a.stop() for a in agents))

    marks = tmp_path / "marks"
    marks.mkdir()

    def job(name: str, scope: subjects.Scope, target: str | None, version: str = "1") -> Outgoing:
        mark = marks / f"{name}-v{version}"
        return build_command(
            name,
            'echo "$KANADE_TEST_PC" >> "$MARK"; echo "$KANADE_TEST_PC"',
            scope=scope,
            target=target,
            version=version,
            env={"MARK": str(mark)},
        )

    upd_v1 = job("update", "group", "web", "1")
    upd_v2 = job("update", "group", "web", "2")  # same job, same target: supersedes v1
    cmds = [
        upd_v1,
        job("inventory", "all", None),
        upd_v2,
        job("only-1", "pc", "pc-1"),
        job("only-3", "pc", "pc-3"),
    ]
    for out in cmds:
        await publish(bus.js, out)

    for a in agents:
        a.start()
    expected = {
        ("pc-1", "update"),
        ("pc-2", "update"),
        ("pc-1", "inventory"),
        ("pc-2", "inventory"),
        ("pc-3", "inventory"),
        ("pc-1", "only-1"),
        ("pc-3", "only-3"),
    }
    sent = {c.request_id for c in cmds}
    await collector.wait(
        lambda r: r.request_id in sent, len(expected), timeout=30, diagnostics=fleet.diagnostics
    )
    for a in agents:
        await barrier(bus.js, bus.nc, collector, a)

    assert work_counts(collector) == dict.fromkeys(expected, 1), collector.summary()
    assert not collector.results_for(request_id=upd_v1.request_id)
    assert {r.version for r in collector.results_for(job="update")} == {"2"}
    assert not (marks / "update-v1").exists()
    assert sorted(lines(marks / "update-v2")) == ["pc-1", "pc-2"]
    assert sorted(lines(marks / "inventory-v1")) == ["pc-1", "pc-2", "pc-3"]
    assert lines(marks / "only-1-v1") == ["pc-1"] and lines(marks / "only-3-v1") == ["pc-3"]
    assert all(r.exit_code == 0 for r in collector.results)

    # Redelivery: drop pc-1's consumer while it is down, so on restart the broker
    # delivers every command addressed to it again. Only its ledger stands between
    # those replays and a second run.
    before = len(collector.results)
    await a1.stop()
    await bus.js.delete_consumer(subjects.STREAM_COMMANDS, subjects.agent_consumer_name("pc-1"))
    a1.start()
    await wait_agent_ready(bus.nc, a1)
    await barrier(bus.js, bus.nc, collector, a1)
    info = await bus.js.consumer_info(
        subjects.STREAM_COMMANDS, subjects.agent_consumer_name("pc-1")
    )
    # update v2, inventory, only-1, the old barrier and the new one were all delivered.
    assert info.delivered.consumer_seq >= 5, info
    new = collector.results[before:]
    assert [r for r in new if not is_barrier(r)] == [], collector.summary()
    assert sorted(lines(marks / "update-v2")) == ["pc-1", "pc-2"]
    assert sorted(lines(marks / "inventory-v1")) == ["pc-1", "pc-2", "pc-3"]
    assert lines(marks / "only-1-v1") == ["pc-1"]


# --- 5. agent crash mid-script --------------------------------------------------------------------
async def test_agent_kill9_mid_script_reports_unknown_and_never_reruns(
    tmp_path: Path, bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    mark = tmp_path / "ran"
    out = build_command(
        "long",
        'echo run >> "$MARK"; sleep 10; echo done',
        target="pc-1",
        timeout_s=60,
        env={"MARK": str(mark)},
    )
    await publish(bus.js, out)
    await collector.wait_started(out, "pc-1", diagnostics=agent.log_tail)
    await eventually(lambda: lines(mark) == ["run"], what="script running")

    await agent.kill9()
    agent.start()
    r = await collector.wait_for_request(out, "pc-1", diagnostics=agent.log_tail)
    assert r.exit_code == exitcodes.KILLED and not r.skipped
    assert "outcome unknown" in r.stderr and r.note and "outcome unknown" in r.note
    await barrier(bus.js, bus.nc, collector, agent)
    assert len(collector.results_for(request_id=out.request_id)) == 1, collector.summary()
    assert lines(mark) == ["run"]


# --- 6. remote kill of a process tree -------------------------------------------------------------
async def test_remote_kill_ends_the_whole_tree(
    tmp_path: Path, bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    sh_pid, gc_pid = tmp_path / "sh.pid", tmp_path / "gc.pid"
    # The grandchild ignores SIGTERM: only the SIGKILL of the whole group ends it.
    script = (
        'sh -c \'trap "" TERM; echo $$ > "$GC"; while :; do sleep 1; done\' & '
        'echo $$ > "$SH"; sleep 100; wait'
    )
    out = build_command(
        "tree", script, target="pc-1", timeout_s=120, env={"SH": str(sh_pid), "GC": str(gc_pid)}
    )
    await publish(bus.js, out)

    def pids() -> tuple[int, int] | None:
        try:
            return int(sh_pid.read_text()), int(gc_pid.read_text())
        except (OSError, ValueError):
            return None

    shell, grandchild = await eventually(
        pids, what="script and grandchild running", diagnostics=agent.log_tail
    )
    assert not process_gone(shell) and not process_gone(grandchild)
    await send_kill(bus.nc, out.command.exec_id)

    r = await collector.wait_for_request(out, "pc-1", diagnostics=agent.log_tail)
    assert r.exit_code == exitcodes.KILLED and not r.skipped
    assert r.note is not None and "killed by remote request" in r.note
    await eventually(
        lambda: process_gone(shell) and process_gone(grandchild), what="shell and grandchild gone"
    )
    # Nothing the script started survives (sleep children of the grandchild included).
    assert agent.pid is not None

    def leftovers() -> list[psutil.Process]:
        return [
            p for p in fleet.tagged_processes() if p.pid != agent.pid and not process_gone(p.pid)
        ]

    await eventually(lambda: not leftovers(), what="no process of the script left")


# --- 7. big output -------------------------------------------------------------------------------
async def test_big_stdout_is_capped_inline_and_stored_whole(
    bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    n_lines = 5 * MiB // 16
    expected = "".join(f"{i:015d}\n" for i in range(n_lines)).encode()
    assert len(expected) == 5 * MiB
    script = f"import sys\nsys.stdout.write(''.join(f'{{i:015d}}\\n' for i in range({n_lines})))\n"
    out = build_command("big", script, target="pc-1", shell="python", timeout_s=60)
    await publish(bus.js, out)

    r = await collector.wait_for_request(out, "pc-1", diagnostics=agent.log_tail)
    assert r.exit_code == 0
    assert r.stdout_bytes == 5 * MiB
    assert r.stdout.encode() == expected[:INLINE_CAP]
    assert r.stdout_ref == f"{r.result_id}/stdout.{hashlib.sha256(expected).hexdigest()}"
    assert r.stderr_ref is None
    store = await bus.obj(subjects.OBJ_OUTPUTS)
    obj = await store.get(r.stdout_ref)
    assert obj.data is not None and len(obj.data) == len(expected)
    assert obj.data == expected


# --- 8. bad input ---------------------------------------------------------------------------------
async def test_malformed_commands_are_dropped_and_intake_continues(
    bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    now = datetime.now(UTC).isoformat()
    garbage = [
        b"\x00\xff\xfe this is not json",
        b'{"request_id": "r-trunc", "exec_id": "e", "job_id": "bad-2", "vers',
        (
            b'{"request_id": 42, "exec_id": ["x"], "job_id": "bad-3", "version": 1, '
            b'"timeout_s": "soon", "issued_at": "yesterday"}'
        ),
        b"[1, 2, 3]",
        b"null",
        # Right shape, wrong types in nested fields.
        (
            '{"request_id": "r6", "exec_id": "e6", "job_id": "bad-6", "version": "1", '
            f'"timeout_s": 5, "issued_at": "{now}", "env": ["A=1"], "address": 7}}'
        ).encode(),
    ]
    for i, payload in enumerate(garbage, 1):
        await bus.js.publish(subjects.command_subject("pc", "pc-1", f"bad-{i}"), payload)
    good = build_command("good", "echo still here", target="pc-1")
    await publish(bus.js, good)

    r = await collector.wait_for_request(good, "pc-1", diagnostics=agent.log_tail)
    assert (r.exit_code, r.stdout) == (0, "still here\n")
    await barrier(bus.js, bus.nc, collector, agent)
    assert agent.is_running()
    assert work_counts(collector) == {("pc-1", "good"): 1}, collector.summary()
    assert agent.log_text().count("dropped a malformed command") == len(garbage)
    # Dropped means terminated: nothing stays pending for redelivery.
    info = await bus.js.consumer_info(
        subjects.STREAM_COMMANDS, subjects.agent_consumer_name("pc-1")
    )
    assert (info.num_ack_pending, info.num_pending) == (0, 0), info


# --- 9. gates ---
_ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"


async def test_deadline_passed_is_skipped_with_how_late(
    bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    deadline = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    out = build_command("late", "echo should-not-run", target="pc-1", deadline_at=deadline)
    await publish(bus.js, out)

    r = await collector.wait_for_request(out, "pc-1", diagnostics=agent.log_tail)
    assert (r.exit_code, r.skipped, r.stdout) == (exitcodes.DEADLINE_PASSED, True, "")
    assert r.started_at is None
    m = re.search(rf"(\d+(?:\.\d+)?)s late \(deadline ({_ISO}), now ({_ISO})\)", r.stderr)
    assert m, r.stderr
    late, dl, now = float(m[1]), m[2], m[3]
    assert datetime.fromisoformat(dl) == deadline
    assert 30 <= late < 60
    assert abs((datetime.fromisoformat(now) - deadline).total_seconds() - late) < 0.01


@pytest.mark.skipif(sys.platform != "linux", reason="cmd/powershell exist on Windows")
async def test_windows_shells_are_unsupported_on_linux(
    bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    outs = [
        build_command(f"win-{shell}", "echo hi", target="pc-1", shell=shell)
        for shell in ("cmd", "powershell")
    ]
    for out in outs:
        await publish(bus.js, out)
    for out in outs:
        r = await collector.wait_for_request(out, "pc-1", diagnostics=agent.log_tail)
        assert (r.exit_code, r.skipped) == (exitcodes.UNSUPPORTED, True)
        assert out.command.shell in r.stderr and "not available" in r.stderr
    assert agent.is_running()


async def test_run_as_user_runs_as_that_user_or_says_why(
    bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    """SPEC §8.3: never silently as the agent's own user (root here)."""
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    named = build_command("as-nobody", "id -un", target="pc-1", run_as="user",
                          run_as_user="nobody")
    ghost = build_command("as-ghost", "id -un", target="pc-1", run_as="user",
                          run_as_user="no-such-user-kanade")
    for out in (named, ghost):
        await publish(bus.js, out)
    r = await collector.wait_for_request(named, "pc-1", diagnostics=agent.log_tail)
    if os.geteuid() == 0:
        assert (r.exit_code, r.stdout) == (0, "nobody\n"), r.stderr
    else:  # an unprivileged agent cannot switch: it says so instead
        assert r.skipped and "needs an agent running as root" in r.stderr
    r = await collector.wait_for_request(ghost, "pc-1", diagnostics=agent.log_tail)
    assert (r.exit_code, r.skipped) == (exitcodes.UNSUPPORTED, True)
    assert "never run as the agent's own user" in r.stderr


# --- 10. ping ---
async def test_ping_returns_a_fresh_heartbeat(bus: Bus, fleet: AgentFleet) -> None:
    agent = fleet.add("pc-1", ["web", "db"])
    await wait_agent_ready(bus.nc, agent)
    before = datetime.now(UTC)
    hb1 = await ping(bus.nc, "pc-1")
    hb2 = await ping(bus.nc, "pc-1")
    after = datetime.now(UTC)
    assert hb1.pc_id == "pc-1"
    assert hb1.agent_version == __version__
    assert hb1.hostname == socket.gethostname()
    assert hb1.os_family == platform.system().lower()
    assert hb1.boot_time is not None
    assert abs(hb1.boot_time.timestamp() - psutil.boot_time()) < 2
    assert hb1.cpu_percent >= 0
    assert agent.pid is not None
    rss = psutil.Process(agent.pid).memory_info().rss
    assert 0.5 * rss < hb1.rss_bytes < 2 * rss
    assert hb1.groups == ["db", "web"]
    # Fresh: made for this request, not a cached periodic heartbeat.
    assert before - timedelta(seconds=1) <= hb1.sent_at <= hb2.sent_at <= after
    assert hb2.sent_at > hb1.sent_at


# --- 11. request_id reuse ---
async def test_same_request_id_different_content_is_refused(
    bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    original = build_command("job-a", "echo original", target="pc-1")
    await publish(bus.js, original)
    first = await collector.wait_for_request(original, "pc-1", diagnostics=agent.log_tail)
    assert (first.exit_code, first.stdout) == (0, "original\n")

    forged_cmd = original.command.model_copy(update={"script": "echo impostor"})
    forged = Outgoing(original.subject, forged_cmd)
    await publish(bus.js, forged)

    def refused(r: Result) -> bool:
        return r.pc_id == "pc-1" and r.exit_code == exitcodes.REFUSED

    (report,) = await collector.wait(refused, what="refusal report", diagnostics=agent.log_tail)
    assert report.skipped and report.stdout == ""
    assert report.result_id != first.result_id
    assert report.request_id.startswith(original.request_id)
    assert "different content" in report.stderr
    await barrier(bus.js, bus.nc, collector, agent)
    # The original's result is untouched: still exactly one, still the original output.
    mine = [r for r in collector.results if r.result_id == first.result_id]
    assert len(mine) == 1 and mine[0].stdout == "original\n"
    assert len([r for r in collector.results if refused(r)]) == 1
    assert "impostor" not in "".join(r.stdout for r in collector.results)


# --- 12. broker crash mid-script (slow) ---
@pytest.mark.slow
async def test_broker_kill9_mid_script_result_arrives_exactly_once(
    nats_server: EmbeddedBroker, bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    out = build_command("through-crash", "sleep 5; echo survived", target="pc-1", timeout_s=60)
    await publish(bus.js, out)
    await collector.wait_started(out, "pc-1", diagnostics=agent.log_tail)

    nats_server.kill()
    down_since = time.monotonic()

    def down_long_enough() -> bool:
        if not agent.is_running():  # the agent must ride it out
            raise HarnessError("agent died while the broker was down\n" + agent.log_tail())
        return time.monotonic() - down_since >= 5.0

    await eventually(down_long_enough, timeout=15, what="broker down for 5s")
    nats_server.restart()

    r = await collector.wait_for_request(out, "pc-1", timeout=45, diagnostics=agent.log_tail)
    assert (r.exit_code, r.stdout) == (0, "survived\n")
    await barrier(bus.js, bus.nc, collector, agent, timeout=30)
    assert len(collector.results_for(request_id=out.request_id)) == 1, collector.summary()
    assert len([e for e in collector.started if e.request_id == out.request_id]) == 1


# --- 13. a script that leaves a background process behind -------------------------------------
async def test_background_child_holding_the_pipes_does_not_hang_or_lose_output(
    tmp_path: Path, bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    """A script may start a daemon and exit: its exit code and the output it wrote are
    reported promptly (the daemon keeps stdout/stderr open and is not ours to kill)."""
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    daemon_pid = tmp_path / "daemon.pid"
    out = build_command(
        "starts-daemon",
        'echo before; echo warn >&2; sleep 60 & echo $! > "$PIDFILE"; exit 4',
        target="pc-1",
        timeout_s=20,
        env={"PIDFILE": str(daemon_pid)},
    )
    await publish(bus.js, out)
    r = await collector.wait_for_request(out, "pc-1", timeout=15, diagnostics=agent.log_tail)
    assert (r.exit_code, r.skipped) == (4, False), collector.summary()
    assert (r.stdout, r.stderr) == ("before\n", "warn\n")
    assert r.note is not None and "background process" in r.note
    assert r.started_at is not None and r.finished_at - r.started_at < timedelta(seconds=8)
    # Left alone: a daemon the script started on purpose is still running.
    assert not process_gone(int(daemon_pid.read_text()))


# --- 14. a corrupt outbox file ---
async def test_corrupt_outbox_file_is_quarantined_and_does_not_block(
    bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    await agent.stop()
    outbox = agent.data_dir / "outbox"
    # Sorts first, so the drain meets it before anything good.
    bad = outbox / "00000000000000000000-00000000.msg"
    bad.write_bytes(b"\x00 not an envelope {")
    agent.start()
    await wait_agent_ready(bus.nc, agent)
    out = build_command("after-corruption", "echo fine", target="pc-1")
    await publish(bus.js, out)
    r = await collector.wait_for_request(out, "pc-1", diagnostics=agent.log_tail)
    assert (r.exit_code, r.stdout) == (0, "fine\n")
    assert not bad.exists() and (outbox / "bad" / bad.name).exists()


# --- 15. finished while the broker is down, then the agent crashes -------------------------------
def _queued_result_files(agent_data: Path, request_id: str) -> list[Path]:
    from kanade.agent.durable.outbox import Envelope
    from kanade.core.models.wire import decode

    hits = []
    for path in sorted((agent_data / "outbox").glob("*.msg")):
        env = Envelope.load(path.read_bytes())
        if (
            env.subject.startswith(f"{subjects.PREFIX}.result.")
            and decode(Result, env.data).request_id == request_id
        ):
            hits.append(path)
    return hits


async def test_result_finished_offline_survives_an_agent_crash(
    nats_server: EmbeddedBroker, bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    go = agent.data_dir.parent / "go"
    out = build_command(
        "offline-finish",
        'while [ ! -e "$GO" ]; do sleep 0.05; done; echo finished offline',
        target="pc-1",
        timeout_s=60,
        env={"GO": str(go)},
    )
    await publish(bus.js, out)
    await collector.wait_started(out, "pc-1", diagnostics=agent.log_tail)

    nats_server.kill()
    go.touch()  # the script finishes while no broker exists
    await eventually(
        lambda: _queued_result_files(agent.data_dir, out.request_id),
        what="result written to the outbox",
        diagnostics=agent.log_tail,
    )
    await agent.kill9()
    nats_server.start()
    agent.start()
    r = await collector.wait_for_request(out, "pc-1", timeout=30, diagnostics=agent.log_tail)
    assert (r.exit_code, r.stdout) == (0, "finished offline\n")
    await barrier(bus.js, bus.nc, collector, agent, timeout=30)
    assert len(collector.results_for(request_id=out.request_id)) == 1, collector.summary()


# --- 16. kill of a command still queued behind the local concurrency cap -----------------------
async def test_kill_of_a_queued_command_reports_at_once(
    tmp_path: Path, bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    # The limit is set locally and as the pc's KV config layer (SPEC §3.7), so it is 1
    # whichever of the two the agent applies.
    kv = await bus.kv(subjects.KV_CONFIG)
    await kv.put("pc.pc-1", b'{"max_local_concurrent": 1}')
    agent = fleet.add("pc-1", extra_args=["--max-local-concurrent", "1"])
    await wait_agent_ready(bus.nc, agent)
    mark = tmp_path / "queued-ran"
    blocker = build_command("blocker", "sleep 30", target="pc-1", timeout_s=60)
    queued = build_command("queued", 'touch "$MARK"', target="pc-1", env={"MARK": str(mark)})
    await publish(bus.js, blocker)
    await collector.wait_started(blocker, "pc-1", diagnostics=agent.log_tail)
    await publish(bus.js, queued)

    async def is_queued() -> bool:
        return (await ping(bus.nc, "pc-1")).queue_length == 1

    await eventually(is_queued, what="second command queued", diagnostics=agent.log_tail)
    await send_kill(bus.nc, queued.command.exec_id)
    r = await collector.wait_for_request(queued, "pc-1", timeout=10, diagnostics=agent.log_tail)
    assert (r.exit_code, r.skipped) == (exitcodes.KILLED, True)
    assert "kill" in r.stderr
    assert not mark.exists()
    # The running one was not touched.
    assert not collector.results_for(request_id=blocker.request_id)
    assert (await ping(bus.nc, "pc-1")).running == 1
