"""The backend's HTTP API against a real nats-server and a real SQLite file.

The app runs in-process (lifespan entered, httpx ASGI transport); agents are
played by hand-built wire messages on the bus. No mocks; waits poll a condition
until a deadline.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nats.aio.msg import Msg

from kanade.backend.inprocess import InProcessBackend, in_process_backend
from kanade.backend.settings import Settings
from kanade.bus import Bus, EmbeddedBroker, free_port
from kanade.core import subjects
from kanade.core.models.wire import Command, Heartbeat, decode, encode
from polling import eventually as shared_eventually
from secured import authority_dir, session_authority

pytestmark = pytest.mark.stores  # SQLite and PostgreSQL (tests/pgdb.py)

DEADLINE = 15.0

HELLO_YAML = """\
id: hello
version: "1"
description: say hello
execute:
  shell: sh
  script: echo hello
  timeout: 30s
"""


eventually = functools.partial(shared_eventually, timeout=DEADLINE)


def heartbeat(pc_id: str, groups: list[str]) -> Heartbeat:
    return Heartbeat(
        pc_id=pc_id,
        agent_version="0.1.0",
        hostname=f"{pc_id}.example",
        os_family="linux",
        os_version="6.1",
        groups=groups,
        sent_at=datetime.now(UTC),
    )


async def beat(backend: InProcessBackend, bus: Bus, *agents: tuple[str, list[str]]) -> None:
    """Publish heartbeats and wait until the agents list shows every one alive."""
    for pc, groups in agents:
        await bus.nc.publish(subjects.heartbeat_subject(pc), encode(heartbeat(pc, groups)))

    async def all_alive() -> bool:
        items = (await backend.client.get("/api/agents")).json()["items"]
        alive = {a["pc_id"] for a in items if a["status"] == "alive"}
        return {pc for pc, _ in agents} <= alive

    await eventually(all_alive, what="heartbeats projected")


# --- health and errors ------------------------------------------------------------------


async def test_health_ok(backend: InProcessBackend) -> None:
    r = await backend.client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["broker"] is True and body["db"] is True
    assert body["version"]


async def test_openapi_schemas_and_metrics_are_served(backend: InProcessBackend) -> None:
    spec = (await backend.client.get("/api/openapi.json")).json()
    assert "/api/exec/{job_id}" in spec["paths"] and "/api/jobs" in spec["paths"]
    job_schema = (await backend.client.get("/api/schemas/job")).json()
    assert job_schema["additionalProperties"] is False and "execute" in job_schema["properties"]
    assert (await backend.client.get("/api/schemas/schedule")).status_code == 200
    metrics = await backend.client.get("/metrics")
    assert b"kanade_broker_connected" in metrics.content


@pytest.mark.parametrize(
    "path",
    [
        "/api/jobs/nope",
        "/api/executions/nope",
        "/api/results/nope",
        "/api/agents/nope",
        "/api/x",
    ],
)
async def test_404s_are_json_with_a_message(backend: InProcessBackend, path: str) -> None:
    r = await backend.client.get(path)
    assert r.status_code == 404
    assert "error" in r.json() and r.json()["error"]


async def test_a_path_parameter_outside_its_pattern_is_a_400_naming_it(
    backend: InProcessBackend,
) -> None:
    # The pattern is in the OpenAPI document and enforced: never a lookup of a non-id.
    r = await backend.client.get("/api/jobs/not%20a%20slug")
    assert r.status_code == 400
    assert [e["path"] for e in r.json()["errors"]] == ["path.job_id"]


async def test_backend_starts_before_the_broker_and_serves_503_until_it_is_up(
    tmp_path: Path,
) -> None:
    broker = EmbeddedBroker(
        tmp_path / "nats", port=free_port(), security=session_authority().broker_security()
    )
    settings = Settings.from_db_arg(
        authority_dir=authority_dir(), nats_url=broker.url, db=str(tmp_path / "k.db")
    )
    async with in_process_backend(settings, wait_for_broker=None) as b:
        health = (await b.client.get("/health")).json()
        assert (health["status"], health["broker"], health["db"]) == ("degraded", False, True)
        r = await b.client.get("/api/jobs")
        assert r.status_code == 503 and "broker" in r.json()["error"]
        # Reads served from SQL do not need the broker.
        assert (await b.client.get("/api/executions")).status_code == 200

        await asyncio.to_thread(broker.start)
        try:

            async def healthy() -> bool:
                return bool((await b.client.get("/health")).json()["broker"])

            await eventually(healthy, timeout=30, what="backend connects once the broker is up")
            assert (await b.client.get("/api/jobs")).status_code == 200
        finally:
            await asyncio.to_thread(broker.stop)


# --- jobs -----------------------------------------------------------------------------


async def test_create_job_from_yaml_and_json(backend: InProcessBackend) -> None:
    c = backend.client
    r = await c.post("/api/jobs", content=HELLO_YAML, headers={"content-type": "application/yaml"})
    assert r.status_code == 201, r.text
    assert r.json()["execute"]["timeout"] == "30s"

    doc = {
        "id": "disk",
        "version": "2",
        "tags": ["ops"],
        "execute": {"shell": "bash", "script": "df -h", "timeout": "1m"},
    }
    r = await c.post("/api/jobs", json=doc)
    assert r.status_code == 201, r.text

    listed = (await c.get("/api/jobs")).json()
    assert [j["id"] for j in listed["items"]] == ["disk", "hello"]
    got = (await c.get("/api/jobs/disk")).json()
    assert got["tags"] == ["ops"] and got["execute"]["timeout"] == "1m"

    # Same content again: idempotent, 200. Same version, other content: 409.
    again = await c.post("/api/jobs", content=HELLO_YAML, headers={"content-type": "text/yaml"})
    assert again.status_code == 200
    changed = HELLO_YAML.replace("echo hello", "echo bye")
    r = await c.post("/api/jobs", content=changed, headers={"content-type": "text/plain"})
    assert r.status_code == 409 and "bump the version" in r.json()["error"]
    # A new version replaces the old one.
    r = await c.post(
        "/api/jobs",
        content=changed.replace('"1"', '"2"'),
        headers={"content-type": "application/x-yaml"},
    )
    assert r.status_code == 201
    assert (await c.get("/api/jobs/hello")).json()["version"] == "2"


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        (
            "id: bad id\nversion: 1\nexecute:\n  shell: zsh\n  scrpt: x\n  timeout: 10 minutes\n",
            {"id", "version", "execute.shell", "execute.scrpt", "execute.timeout"},
        ),
        ("id: [unclosed\n", {"(document)"}),
        ("- a\n- b\n", {"(document)"}),
        (
            "id: a\nversion: '1'\nexecute:\n  shell: sh\n  script_file: ./x.sh\n  timeout: 5s\n",
            {"execute.script_file"},
        ),
    ],
)
async def test_bad_job_documents_are_400_with_every_path(
    backend: InProcessBackend, body: str, paths: set[str]
) -> None:
    r = await backend.client.post(
        "/api/jobs", content=body, headers={"content-type": "application/yaml"}
    )
    assert r.status_code == 400
    payload = r.json()
    assert payload["error"] == "invalid job"
    assert {e["path"] for e in payload["errors"]} == paths
    assert all(e["reason"] for e in payload["errors"])


async def test_unsupported_content_type_is_415(backend: InProcessBackend) -> None:
    r = await backend.client.post(
        "/api/jobs", content=b"\x00", headers={"content-type": "application/octet-stream"}
    )
    assert r.status_code == 415 and "application/yaml" in r.json()["error"]


# --- exec -----------------------------------------------------------------------------


async def capture(bus: Bus, subject: str) -> tuple[list[Msg], Callable[[], Awaitable[None]]]:
    """Record every core-NATS message on ``subject`` in arrival order."""
    seen: list[Msg] = []

    async def cb(msg: Msg) -> None:
        seen.append(msg)

    sub = await bus.nc.subscribe(subject, cb=cb)
    await bus.nc.flush()
    return seen, sub.unsubscribe


async def test_exec_pins_then_publishes_one_command_per_subject(
    backend: InProcessBackend, bus: Bus
) -> None:
    c = backend.client
    assert (await c.post("/api/jobs", content=HELLO_YAML)).status_code == 201
    await beat(backend, bus, ("pc1", ["web"]), ("pc2", ["web", "db"]), ("pc3", ["db"]))
    # One subscription on everything: the broker delivers in the order it stored,
    # so the pin's KV write must come before the first command.
    seen, stop = await capture(bus, ">")
    try:
        r = await c.post(
            "/api/exec/hello?force=true",  # pc9 never reported
            json={"target": {"groups": ["web"], "pcs": ["pc9"]}, "starting_deadline": "10m"},
        )
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["job_id"] == "hello" and created["version"] == "1"
        # Alive members of "web" plus the explicitly listed (offline) pc9.
        assert created["expected_pcs"] == ["pc1", "pc2", "pc9"]
        assert created["expected_count"] == 3

        want = {
            subjects.command_subject("group", "web", "hello"),
            subjects.command_subject("pc", "pc9", "hello"),
        }
        pin_subject = f"$KV.{subjects.KV_PINS}.hello"

        async def all_seen() -> bool:
            return want <= {m.subject for m in seen}

        await eventually(all_seen, what="command messages")
    finally:
        await stop()

    order = [m.subject for m in seen if m.subject in want | {pin_subject}]
    assert order[0] == pin_subject, order
    commands = [decode(Command, m.data) for m in seen if m.subject in want]
    assert len(commands) == 2
    assert {cmd.request_id for cmd in commands} == {commands[0].request_id}
    cmd = commands[0]
    assert (cmd.exec_id, cmd.job_id, cmd.version) == (created["exec_id"], "hello", "1")
    assert cmd.address.groups == ["web"] and cmd.address.pcs == ["pc9"]
    assert cmd.deadline_at is not None and cmd.timeout_s == 30.0

    pins = await bus.kv(subjects.KV_PINS)
    assert (await pins.get("hello")).value == b"1"

    # The exec record went to KANADE_EXECS and the row is readable at once.
    rec = await bus.js.get_last_msg(
        subjects.STREAM_EXECS, subjects.exec_subject("created", created["exec_id"])
    )
    assert json.loads(rec.data)["expected_count"] == 3
    detail = (await c.get(f"/api/executions/{created['exec_id']}")).json()
    assert detail["status"] == "pending" and detail["expected_count"] == 3
    assert [(e["pc_id"], e["state"]) for e in detail["results"]] == [
        ("pc1", "pending"),
        ("pc2", "pending"),
        ("pc9", "pending"),
    ]
    audit = await bus.js.get_last_msg(subjects.STREAM_AUDIT, subjects.audit_subject("exec.create"))
    audit_body = json.loads(audit.data)
    assert audit_body["actor"] == "anonymous"
    assert audit_body["details"]["exec_id"] == created["exec_id"]


async def test_exec_all_publishes_on_the_all_subject(backend: InProcessBackend, bus: Bus) -> None:
    c = backend.client
    await c.post("/api/jobs", content=HELLO_YAML)
    await beat(backend, bus, ("pc1", []), ("pc2", ["x"]))
    r = await c.post("/api/exec/hello", json={"target": {"all": True}, "jitter": "2s"})
    assert r.status_code == 201
    assert r.json()["expected_pcs"] == ["pc1", "pc2"]
    msg = await bus.js.get_last_msg(
        subjects.STREAM_COMMANDS, subjects.command_subject("all", None, "hello")
    )
    cmd = decode(Command, msg.data)
    assert cmd.address.all and cmd.jitter_s == 2.0 and cmd.exec_id == r.json()["exec_id"]


async def test_exec_errors(backend: InProcessBackend) -> None:
    c = backend.client
    r = await c.post("/api/exec/nope", json={"target": {"all": True}})
    assert r.status_code == 404 and "nope" in r.json()["error"]
    r = await c.post("/api/exec/no.such*job", json={"target": {"all": True}})
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "path.job_id"

    await c.post("/api/jobs", content=HELLO_YAML)
    r = await c.post("/api/exec/hello", json={"target": {}})
    assert r.status_code == 400
    assert r.json()["errors"][0]["path"] == "target"
    r = await c.post(
        "/api/exec/hello",
        json={"target": {"pcs": ["ok", "not ok"], "color": "red"}, "jitter": "soon"},
    )
    assert r.status_code == 400
    paths = {e["path"] for e in r.json()["errors"]}
    assert paths == {"target.pcs", "target.color", "jitter"}
    r = await c.post("/api/exec/hello", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid request"


async def test_run_adhoc_script(backend: InProcessBackend, bus: Bus) -> None:
    r = await backend.client.post(
        "/api/run?force=true",  # pc1 never reported
        json={
            "script": "uname -a",
            "timeout": "10s",
            "target": {"pcs": ["pc1"]},
            "env": {"A": "1"},
        },
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["kind"] == "adhoc" and created["job_id"].startswith("adhoc-")
    assert created["expected_pcs"] == ["pc1"]
    msg = await bus.js.get_last_msg(
        subjects.STREAM_COMMANDS, subjects.command_subject("pc", "pc1", created["job_id"])
    )
    cmd = decode(Command, msg.data)
    assert (cmd.script, cmd.shell, cmd.timeout_s, cmd.env) == ("uname -a", "sh", 10.0, {"A": "1"})

    bad = await backend.client.post(
        "/api/run", json={"script": "", "timeout": "0s", "shell": "zsh", "target": {"all": True}}
    )
    assert bad.status_code == 400
    assert {e["path"] for e in bad.json()["errors"]} == {"script", "timeout", "shell"}


async def test_agents_list_shows_status_and_heartbeat_fields(
    backend: InProcessBackend, bus: Bus
) -> None:
    await beat(backend, bus, ("pc1", ["web", "db"]))
    agents = (await backend.client.get("/api/agents")).json()["items"]
    (a,) = agents
    assert (a["pc_id"], a["status"], a["groups"], a["os_family"]) == (
        "pc1",
        "alive",
        ["db", "web"],
        "linux",
    )
    one = (await backend.client.get("/api/agents/pc1")).json()
    assert one["hostname"] == "pc1.example"
    alive_only = (await backend.client.get("/api/agents?status=offline")).json()
    assert alive_only["items"] == []


async def test_group_membership_records_when_each_pc_joined(
    backend: InProcessBackend, bus: Bus
) -> None:
    """SPEC §3.2: the instant a pc joined a group (the backend's clock, like a command's
    issued_at) is stored with the membership; kept groups keep it, a re-join restarts it;
    the stored list still reads as plain names for older readers."""
    c = backend.client

    def since(item: dict[str, Any]) -> dict[str, datetime]:
        return {g: datetime.fromisoformat(s) for g, s in item["since"].items()}

    added = (
        await c.post("/api/groups/ops/members?force=true", json={"pcs": ["pc-m"]})
    ).json()["items"][0]
    joined_ops = since(added)["ops"]
    assert added["groups"] == ["ops"]
    both = since((await c.put("/api/groups/pc-m", json={"groups": ["ops", "web"]})).json())
    assert both["ops"] == joined_ops and both["web"] >= joined_ops
    kv = await bus.kv(subjects.KV_GROUPS)
    stored = json.loads((await kv.get("pc-m")).value or b"")
    assert [g for g in stored if isinstance(g, str)] == ["ops", "web"]
    await c.delete("/api/groups/ops/members/pc-m")
    rejoined = await c.post("/api/groups/ops/members", json={"pcs": ["pc-m"]})
    back = since(rejoined.json()["items"][0])
    assert back["ops"] > joined_ops and back["web"] == both["web"]


async def test_malformed_member_names_are_a_400_naming_the_item(
    backend: InProcessBackend,
) -> None:
    """An empty or malformed pc or group name is refused before any lookup: schemathesis
    found ``{"pcs": [""]}`` answered 503 (the broker refused the KV key)."""
    c = backend.client
    for body in ({"pcs": [""]}, {"pcs": ["ok-1", "no spaces"]}):
        r = await c.post("/api/groups/ops/members", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["errors"][0]["path"].startswith("pcs["), r.text
    r = await c.put("/api/groups/pc-m", json={"groups": [""]}, params={"force": "true"})
    assert r.status_code == 400, r.text
    r = await c.post("/api/groups/ops/members", json={"pcs": ["x"] * 1001}, params={"force": "1"})
    assert r.status_code == 400, r.text
