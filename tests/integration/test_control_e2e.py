"""Stop controls and fleet state end to end (SPEC §3.3, §3.7, §4.5): real nats-server,
real backend and agent processes, driven through the ``kanade`` CLI.

One stack per module (broker + backend + two long-lived agents); tests that need an
agent to be offline while something happens add their own, uniquely named agent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from agent_harness import process_gone
from test_control_stack import ControlStack, json_lines, start_stack, stop_stack, wait_until

from kanade.bus import Bus
from kanade.core import subjects
from kanade.core.auditactions import subject_token
from kanade.core.models.wire import Heartbeat, decode
from secured import connect_backend, session_authority

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

INLINE_CAP = 256 * 1024


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, module_store_url: str
) -> Iterator[ControlStack]:
    s = start_stack(tmp_path_factory.mktemp("control"), db=module_store_url)
    try:
        s.agent("local-1", ("local", "canary"))
        s.agent("local-2", ("local",))
        yield s
    finally:
        stop_stack(s)


@pytest.fixture
async def bus(stack: ControlStack) -> AsyncIterator[Bus]:
    b = await connect_backend(stack.broker.url, session_authority(), name="pytest-control")
    try:
        yield b
    finally:
        await b.close()


async def last_audit(bus: Bus, action: str) -> dict[str, object]:
    msg = await bus.js.get_last_msg(
        subjects.STREAM_AUDIT, subjects.audit_subject(subject_token(action))
    )
    record: dict[str, object] = json.loads(msg.data or b"{}")
    return record


def job_yaml(job_id: str, version: str, script: str, extra: str = "") -> str:
    return (
        f"id: {job_id}\nversion: '{version}'\nexecute:\n  shell: sh\n"
        f"  script: {script!r}\n  timeout: 30s\n{extra}"
    )


# --- ping ---------------------------------------------------------------------------------
def test_ping_returns_a_fresh_heartbeat_or_says_no_answer(stack: ControlStack) -> None:
    before = datetime.now(UTC)
    res = stack.ok("ping", "local-1", "--json")
    (hb,) = json_lines(res.stdout)
    assert hb["pc_id"] == "local-1" and hb["groups"] == ["canary", "local"]
    sent = datetime.fromisoformat(str(hb["sent_at"]).replace("Z", "+00:00"))
    assert abs((sent - before).total_seconds()) < 5, hb  # fresh, not the last stored one
    human = stack.ok("ping", "local-2")
    assert "local-2 answered in" in human.stdout

    t0 = time.monotonic()
    res = stack.kanade("ping", "nobody-here", "--timeout", "1")
    assert res.returncode == 1  # a pc nothing knows: refused at once, closest names listed
    assert "unknown pc 'nobody-here'" in res.stderr and "local-1" in res.stderr
    assert time.monotonic() - t0 < 10

    stack.agent("gone-1")
    stack.stop_agent("gone-1")
    t0 = time.monotonic()
    res = stack.kanade("ping", "gone-1", "--timeout", "2")
    # Known but not connected: the broker says so at once — not "no answer in 2 s".
    assert res.returncode == 1 and "gone-1 is not connected" in res.stderr
    assert "in 2 s" not in res.stderr and time.monotonic() - t0 < 10
    # A pc that exists but is offline needs no --force: the command waits for it.
    with stack.http() as http:
        r = http.post("/api/run", json={"script": "true", "target": {"pcs": ["gone-1"]}})
        assert r.status_code == 201, r.text
        assert http.post(f"/api/executions/{r.json()['exec_id']}/kill").status_code == 200


# --- gates: revoked (126), version pin (124) ---------------------------------------------------
async def test_revoked_job_is_skipped_by_an_agent_that_was_offline(
    stack: ControlStack, bus: Bus, tmp_path: Path
) -> None:
    stack.create_job(job_yaml("rev-job", "1", "echo ran-$KANADE_TEST_PC"), tmp_path / "j.yaml")
    stack.agent("rev-1", start=False)
    (created,) = json_lines(
        stack.ok("exec", "rev-job", "--pc", "rev-1", "--force", "--json").stdout  # not yet seen
    )
    res = stack.ok("revoke", "rev-job", "--reason", "bad script")
    assert "job rev-job revoked (bad script)" in res.stdout
    listed = {r["job_id"]: r for r in json_lines(stack.ok("revocations", "--json").stdout)}
    assert listed["rev-job"]["reason"] == "bad script" and listed["rev-job"]["by"] == "anonymous"
    audit = await last_audit(bus, "job.revoke")
    assert audit["actor"] == "anonymous" and audit["details"] == {
        "job_id": "rev-job",
        "reason": "bad script",
    }

    stack.start_agent("rev-1")  # comes back with the command queued for it
    result = stack.result_of(created["exec_id"], "rev-1")
    assert result["exit_code"] == 126 and result["skipped"] is True
    assert "job rev-job is revoked" in result["stderr"]

    res = stack.ok("unrevoke", "rev-job")
    assert "no longer revoked" in res.stdout
    again = stack.ok("unrevoke", "rev-job")
    assert "was not revoked" in again.stdout
    res = stack.ok("exec", "rev-job", "--pc", "rev-1", "--wait", "--json")
    assert [(x["pc_id"], x["exit_code"], x["stdout"]) for x in json_lines(res.stdout)] == [
        ("rev-1", 0, "ran-rev-1\n")
    ]


def test_version_pin_mismatch_skips_an_older_queued_version(
    stack: ControlStack, tmp_path: Path
) -> None:
    stack.create_job(job_yaml("pin-job", "1", "echo v1"), tmp_path / "v1.yaml")
    stack.agent("pin-1", start=False)
    (old,) = json_lines(
        stack.ok("exec", "pin-job", "--pc", "pin-1", "--force", "--json").stdout  # not yet seen
    )
    stack.create_job(job_yaml("pin-job", "2", "echo v2"), tmp_path / "v2.yaml")
    res = stack.ok("exec", "pin-job", "--pc", "local-2", "--wait", "--json")  # the pin moves
    assert [x["stdout"] for x in json_lines(res.stdout)] == ["v2\n"]

    stack.start_agent("pin-1")
    result = stack.result_of(old["exec_id"], "pin-1")
    assert result["exit_code"] == 124 and result["skipped"] is True
    assert "pinned to 2" in result["stderr"] and "carries 1" in result["stderr"]


# --- kill ------------------------------------------------------------------------------------
async def test_kill_ends_a_running_tree_grandchild_included(
    stack: ControlStack, bus: Bus, tmp_path: Path
) -> None:
    d = tmp_path / "kill"
    d.mkdir()
    # gc: a grandchild in the script's process group; daemon: one that left it with setsid
    # (and whose parent exited at once, so it is nobody's descendant any more).
    script = (
        f"echo $$ > {d}/sh.pid; (sleep 300; true) & echo $! > {d}/gc.pid; "
        f"setsid -f sh -c 'echo $$ > {d}/daemon.pid; exec sleep 300'; "
        f"while [ ! -s {d}/daemon.pid ]; do sleep 0.05; done; touch {d}/ready; wait"
    )
    created = stack.run_adhoc("local-1", script, timeout="120s")
    wait_until(lambda: (d / "ready").exists(), what="script started")
    pids = [int((d / n).read_text()) for n in ("sh.pid", "gc.pid", "daemon.pid")]
    assert not any(process_gone(p) for p in pids)

    res = stack.ok("kill", created["exec_id"])
    assert "kill sent" in res.stdout
    result = stack.result_of(created["exec_id"], "local-1")
    assert result["exit_code"] == -1 and "killed by remote request" in (result["note"] or "")
    wait_until(lambda: all(process_gone(p) for p in pids), what="script tree gone", timeout=10)
    assert stack.execution(created["exec_id"])["status"] == "cancelled"
    audit = await last_audit(bus, "exec.kill")
    assert audit["details"]["exec_id"] == created["exec_id"]  # type: ignore[index]


def test_kill_cancels_a_copy_queued_for_a_stopped_agent(
    stack: ControlStack, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    stack.create_job(job_yaml("kq-job", "1", f"touch {marker}"), tmp_path / "kq.yaml")
    stack.agent("kq-1", start=False)
    (created,) = json_lines(
        stack.ok("exec", "kq-job", "--pc", "kq-1", "--force", "--json").stdout  # not yet seen
    )
    assert stack.execution(created["exec_id"])["status"] == "pending"

    (killed,) = json_lines(stack.ok("kill", created["exec_id"], "--json").stdout)
    assert killed["cancelled_queued"] == 1 and killed["status"] == "cancelled"
    assert killed["cancelled_subjects"] == ["kanade.cmd.pc.kq-1.kq-job"]

    stack.start_agent("kq-1")
    # Barrier: a command published after the killed one has run, so the agent has
    # consumed everything queued before it.
    res = stack.ok("run", "--pc", "kq-1", "--json", "--", "echo after")
    assert [x["stdout"] for x in json_lines(res.stdout)] == ["after\n"]
    assert not marker.exists()
    ex = stack.execution(created["exec_id"])
    assert ex["status"] == "cancelled"
    # It never ran there, and says so (SPEC §4.3: no pc stays pending for good).
    assert [r["state"] for r in ex["results"]] == ["no_result"]
    assert "cancelled before this pc started" in ex["results"][0]["note"]
    # A second kill is harmless and finds nothing left to cancel.
    (again,) = json_lines(stack.ok("kill", created["exec_id"], "--json").stdout)
    assert again["cancelled_queued"] == 0 and again["status"] == "cancelled"


def test_control_errors_are_one_line_and_non_zero(stack: ControlStack) -> None:
    res = stack.kanade("kill", "no-such-exec")
    assert res.returncode == 1 and "execution 'no-such-exec' not found" in res.stderr
    with stack.http() as http:
        r = http.post("/api/executions/nope/kill")
        assert r.status_code == 404 and "not found" in r.json()["error"]
        r = http.put("/api/config/bogus/x", json={"heartbeat_interval": 3})
        assert r.status_code == 400 and r.json()["errors"][0]["path"] == "path.scope"
        r = http.post("/api/agents/nobody/ping", params={"timeout": 0.5})
        assert r.status_code == 400 and r.json()["errors"][0]["path"] == "pc_id"
        r = http.get("/api/results/none/output/stdout")
        assert r.status_code == 404
    res = stack.kanade("results", "output", "no-such-result")
    assert res.returncode == 1 and "not found" in res.stderr


# --- config ----------------------------------------------------------------------------------
async def test_heartbeat_interval_is_applied_live(stack: ControlStack, bus: Bus) -> None:
    stack.agent("cfg-1", heartbeat_interval=30.0)
    arrivals: list[float] = []
    local: list[float] = []  # local-1 runs with --heartbeat-interval 1 and no KV layer

    async def on_hb(msg: object) -> None:
        hb = decode(Heartbeat, msg.data)  # type: ignore[attr-defined]
        (arrivals if hb.pc_id == "cfg-1" else local).append(time.monotonic())

    sub = await bus.nc.subscribe(subjects.heartbeat_subject("cfg-1"), cb=on_hb)
    sub_local = await bus.nc.subscribe(subjects.heartbeat_subject("local-1"), cb=on_hb)
    try:
        await bus.nc.flush()
        res = await asyncio.to_thread(
            stack.ok, "config", "set", "--pc", "cfg-1", "heartbeat_interval", "1"
        )
        assert "pc.cfg-1: heartbeat_interval = 1s" in res.stdout
        set_at = time.monotonic()
        give_up = set_at + 15
        while len([t for t in arrivals if t > set_at]) < 5 and time.monotonic() < give_up:
            await asyncio.sleep(0.05)
        after = [t for t in arrivals if t > set_at]
        assert len(after) >= 5, f"heartbeats after the change: {after}"
        gaps = [b - a for a, b in itertools.pairwise(after[1:])]  # [0]: the wake-up beat
        assert all(0.4 < g < 2.5 for g in gaps), gaps  # ~1 s, not 30 s
        # The agent's own flag is its default: reading KV must not reset it to 30 s.
        local_after = [t for t in local if t > set_at]
        assert len(local_after) >= 4, f"local-1 heartbeats: {local_after}"
    finally:
        await sub.unsubscribe()
        await sub_local.unsubscribe()

    (eff,) = json_lines(stack.ok("config", "effective", "cfg-1", "--json").stdout)
    assert eff["values"]["heartbeat_interval"] == 1.0
    assert eff["sources"]["heartbeat_interval"] == "pc.cfg-1"
    assert eff["sources"]["max_local_concurrent"] == "default"
    (layer,) = json_lines(stack.ok("config", "get", "--pc", "cfg-1", "--json").stdout)
    assert layer == {"layer": "pc.cfg-1", "settings": {"heartbeat_interval": 1.0}}
    human = stack.ok("config", "effective", "cfg-1")
    assert "pc.cfg-1" in human.stdout and "heartbeat_interval" in human.stdout

    res = stack.ok("config", "unset", "--pc", "cfg-1", "heartbeat_interval")
    assert "removed heartbeat_interval" in res.stdout
    (layer,) = json_lines(stack.ok("config", "get", "--pc", "cfg-1", "--json").stdout)
    assert layer["settings"] == {}


def test_bad_config_values_name_the_key_and_reason(stack: ControlStack) -> None:
    res = stack.kanade("config", "set", "--pc", "local-1", "heartbeat_interval", "-3")
    assert res.returncode == 1
    assert "heartbeat_interval: must be a number of seconds in 0.1..86400, got -3" in res.stderr
    res = stack.kanade("config", "set", "--global", "colour", "blue")
    assert res.returncode == 1 and "colour: unknown setting" in res.stderr
    res = stack.kanade("config", "set", "--group", "web", "log_level", "loud", "--force")
    assert res.returncode == 1 and "log_level: must be one of" in res.stderr
    res = stack.kanade("config", "set", "heartbeat_interval", "5")
    assert res.returncode == 1 and "--global, --group G or --pc ID" in res.stderr
    res = stack.kanade("config", "unset", "--pc", "local-1")
    assert res.returncode == 1 and "--all-keys" in res.stderr
    (layer,) = json_lines(stack.ok("config", "get", "--pc", "local-1", "--json").stdout)
    assert layer["settings"] == {}  # nothing bad was stored


def test_effective_config_layers_groups_and_warns_on_conflicts(stack: ControlStack) -> None:
    stack.agent("cfg-2")  # started with --heartbeat-interval 1
    stack.ok("group", "set", "cfg-2", "cfg-a", "cfg-b")  # the groups exist from here on
    stack.ok("config", "set", "--global", "max_output_bytes", "262144")
    stack.ok("config", "set", "--group", "cfg-a", "log_level", "info")
    stack.ok("config", "set", "--group", "cfg-b", "log_level", "warning")
    stack.ok("config", "set", "--pc", "cfg-2", "max_local_concurrent", "3")
    try:
        (eff,) = json_lines(stack.ok("config", "effective", "cfg-2", "--json").stdout)
        assert eff["groups"] == ["cfg-a", "cfg-b"]
        assert eff["values"]["log_level"] == "warning"
        # What the agent really applies: its own flag (reported in its heartbeat), not 30 s.
        assert eff["values"]["heartbeat_interval"] == 1.0
        assert eff["sources"] == {
            "heartbeat_interval": "local",
            "log_level": "group.cfg-b",
            "max_local_concurrent": "pc.cfg-2",
            "max_output_bytes": "global",
            "target_version": "default",
            "target_version_jitter": "default",
            "live_output_bytes_per_s": "default",
            "live_output_msgs_per_s": "default",
        }
        assert any("group.cfg-b wins" in w for w in eff["warnings"]), eff["warnings"]
        layers = {x["layer"] for x in json_lines(stack.ok("config", "get", "--json").stdout)}
        assert {"global", "group.cfg-a", "group.cfg-b", "pc.cfg-2"} <= layers
    finally:
        stack.ok("group", "set", "cfg-2")
        stack.ok("config", "unset", "--global", "--all-keys")
        stack.ok("config", "unset", "--group", "cfg-a", "--all-keys")
        stack.ok("config", "unset", "--group", "cfg-b", "--all-keys")
        stack.ok("config", "unset", "--pc", "cfg-2", "--all-keys")


def test_max_local_concurrent_changes_without_restart(stack: ControlStack, tmp_path: Path) -> None:
    agent = stack.agent("mlc-1")
    stack.ok("config", "set", "--pc", "mlc-1", "max_local_concurrent", "1")
    wait_until(
        lambda: "'max_local_concurrent': 1" in agent.log_text(),
        what="mlc-1 applied max_local_concurrent 1",
        diagnostics=agent.log_tail,
    )

    def job(name: str) -> str:
        return (
            f"touch {tmp_path}/{name}.started; "
            f"while [ ! -f {tmp_path}/release ]; do sleep 0.05; done"
        )

    a = stack.run_adhoc("mlc-1", job("a"))
    wait_until(lambda: (tmp_path / "a.started").exists(), what="a started")
    b = stack.run_adhoc("mlc-1", job("b"))

    def queued() -> bool:
        hb = stack.http().post("/api/agents/mlc-1/ping").json()
        return hb["running"] == 1 and hb["queue_length"] == 1

    wait_until(queued, what="b queued behind a", diagnostics=agent.log_tail)
    assert not (tmp_path / "b.started").exists()

    stack.ok("config", "set", "--pc", "mlc-1", "max_local_concurrent", "2")
    wait_until(lambda: (tmp_path / "b.started").exists(), what="b started once the cap grew")
    (tmp_path / "release").touch()
    for created in (a, b):
        assert stack.result_of(created["exec_id"], "mlc-1")["exit_code"] == 0


# --- groups ----------------------------------------------------------------------------------
def _agent_groups(stack: ControlStack, pc: str) -> list[str]:
    groups: list[str] = stack.http().get(f"/api/agents/{pc}").json()["groups"]
    return groups


async def test_group_membership_is_followed_live(stack: ControlStack, bus: Bus) -> None:
    res = await asyncio.to_thread(stack.ok, "group", "add", "web", "local-2")
    # KV membership: the harness registered the agent's "local" there (the backend
    # provisions command consumers from KV only, never from what an agent claims).
    assert "local-2: local, web (changed)" in res.stdout
    await asyncio.to_thread(
        wait_until, lambda: "web" in _agent_groups(stack, "local-2"), what="local-2 in web"
    )
    agents = {
        a["pc_id"]: a
        for a in json_lines((await asyncio.to_thread(stack.ok, "agents", "--json")).stdout)
    }
    assert agents["local-2"]["groups"] == ["local", "web"]
    human = (await asyncio.to_thread(stack.ok, "agents")).stdout
    assert "local,web" in human

    res = await asyncio.to_thread(
        stack.ok, "run", "--group", "web", "--json", "--", "echo $KANADE_TEST_PC"
    )
    assert [(x["pc_id"], x["stdout"]) for x in json_lines(res.stdout)] == [("local-2", "local-2\n")]
    groups = {
        g["group"]: g
        for g in json_lines((await asyncio.to_thread(stack.ok, "group", "list", "--json")).stdout)
    }
    assert groups["web"]["members"] == ["local-2"] and groups["web"]["reported"] == ["local-2"]
    audit = await last_audit(bus, "group.set")
    assert audit["details"]["after"] == ["local", "web"]  # type: ignore[index]

    res = await asyncio.to_thread(stack.ok, "group", "rm", "web", "local-2")
    assert "local-2: local (changed)" in res.stdout
    await asyncio.to_thread(
        wait_until, lambda: "web" not in _agent_groups(stack, "local-2"), what="local-2 left web"
    )
    res = await asyncio.to_thread(stack.kanade, "run", "--group", "web", "--", "true")
    assert res.returncode == 1 and "unknown group 'web'" in res.stderr  # nobody has it now
    # Published to the group anyway (forced, expected 0): local-2 must not receive it.
    stray = stack.http().post(
        "/api/run?force=true", json={"script": "echo stray", "target": {"groups": ["web"]}}
    )
    assert stray.status_code == 201 and stray.json()["expected_count"] == 0
    await asyncio.to_thread(stack.ok, "run", "--pc", "local-2", "--", "true")  # barrier
    assert stack.execution(stray.json()["exec_id"])["results"] == []


# --- full output and job delete ------------------------------------------------------------------
def test_full_output_of_a_5mb_result(stack: ControlStack) -> None:
    script = (
        "import sys\n"
        "sys.stdout.write(''.join(f'{i:08d} line of output\\n' for i in range(230000)))\n"
        "sys.stderr.write('small stderr\\n')\n"
    )
    expected = "".join(f"{i:08d} line of output\n" for i in range(230000)).encode()
    assert len(expected) > 5 * 1024 * 1024
    created = stack.run_adhoc("local-1", script, shell="python")
    result = stack.result_of(created["exec_id"], "local-1")
    assert result["exit_code"] == 0
    assert result["stdout_bytes"] == len(expected) and result["stdout_ref"]
    assert len(result["stdout"].encode()) == INLINE_CAP  # the row holds only the head

    t0 = time.monotonic()
    full = stack.kanade("results", "output", result["result_id"], binary=True)
    elapsed = time.monotonic() - t0
    assert full.returncode == 0, full.stderr
    assert full.stdout == expected
    err = stack.kanade("results", "output", result["result_id"], "--stderr", binary=True)
    assert err.returncode == 0 and err.stdout == b"small stderr\n"
    listed = json_lines(stack.ok("results", "--exec", created["exec_id"], "--json").stdout)
    assert [r["result_id"] for r in listed] == [result["result_id"]]
    print(f'{{"name": "control.output_5mb", "seconds": {elapsed:.3f}}}')


def test_job_delete_revokes_it(stack: ControlStack, tmp_path: Path) -> None:
    stack.create_job(job_yaml("del-job", "1", "echo hi"), tmp_path / "d.yaml")
    res = stack.ok("job", "delete", "del-job")
    assert "deleted and revoked" in res.stdout
    gone = stack.kanade("job", "show", "del-job")
    assert gone.returncode == 1 and "not found" in gone.stderr
    listed = {r["job_id"]: r for r in json_lines(stack.ok("revocations", "--json").stdout)}
    assert listed["del-job"]["reason"] == "job deleted"
    again = stack.kanade("job", "delete", "del-job")
    assert again.returncode == 1 and "not found" in again.stderr
    stack.ok("unrevoke", "del-job")
