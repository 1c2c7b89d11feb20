"""Enrolment end to end with real processes (SPEC §8.1): a secured broker, a
``kanade-backend`` process with ``--authority``, ``kanade agent enroll-token`` printing the
command, ``kanade-agent enroll`` writing the trust dir and config, the enrolled identity
connecting and heartbeating, then ``kanade agent revoke`` cutting it off within seconds
and refusing its reconnect."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from secure_backend import secured_broker

from kanade.bus.broker import EmbeddedBroker, free_port
from kanade.bus.connection import BusConnectError, connect
from kanade.bus.credentials import BusCredentials
from kanade.core import subjects as s
from kanade.core.instants import system_clock
from kanade.core.models.wire import Heartbeat, encode
from kanade.security.authority import Authority
from pgdb import db_env
from polling import eventually, wait_until
from stack import BIN, terminate

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores


@dataclass
class Backend:
    url: str
    broker: EmbeddedBroker
    log: Path

    def kanade(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KANADE_URL": self.url}
        env.pop("KANADE_TOKEN", None)
        return subprocess.run(
            [str(BIN / "kanade"), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )


def agent_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KANADE_AGENT_CONFIG"}
    return subprocess.run(
        [str(BIN / "kanade-agent"), *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def backend(tmp_path: Path, store_url: str) -> Iterator[Backend]:
    authority = Authority.create(tmp_path / "security")
    with secured_broker(tmp_path, authority) as broker:
        port = free_port()
        log = tmp_path / "backend.log"
        with open(log, "w") as fh:
            proc = subprocess.Popen(
                [
                    str(BIN / "kanade-backend"),
                    "run",
                    "--nats-url",
                    broker.url,
                    "--authority",
                    str(authority.root),
                    "--http-port",
                    str(port),
                    "--no-scheduler",
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
                env=db_env(store_url),
            )
        url = f"http://127.0.0.1:{port}"
        try:

            def healthy() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"backend exited:\n{log.read_text()}")
                try:
                    return bool(httpx.get(f"{url}/health", timeout=2).json().get("broker"))
                except httpx.HTTPError:
                    return False

            wait_until(healthy, "backend connected to the secured broker", timeout=60)
            yield Backend(url, broker, log)
        finally:
            terminate(proc)


def test_enroll_token_then_agent_enroll_then_revoke(backend: Backend, tmp_path: Path) -> None:
    made = backend.kanade("agent", "enroll-token", "--group", "web", "--expires", "30m", "--json")
    assert made.returncode == 0, made.stderr
    token_info = json.loads(made.stdout)
    command = shlex.split(token_info["command"])
    assert command[:3] == ["kanade-agent", "enroll", backend.url]
    human = backend.kanade("agent", "enroll-token")
    assert human.returncode == 0 and f"kanade-agent enroll {backend.url} " in human.stdout

    data_dir, config = tmp_path / "agent-data", tmp_path / "agent.yaml"
    config.write_text("heartbeat_interval: 5\n")
    done = agent_cli(
        *command[1:], "--pc-id", "e2e-1", "--data-dir", str(data_dir), "--config", str(config)
    )
    assert done.returncode == 0, done.stderr
    assert "enrolled as e2e-1" in done.stdout
    trust = data_dir / "trust"
    assert trust.stat().st_mode & 0o777 == 0o700
    for private in ("agent.creds", "keyring.json"):
        assert (trust / private).stat().st_mode & 0o777 == 0o600, private
    # the backend's command-signing public keys, pinned (SPEC §8.2)
    pinned = json.loads((trust / "keyring.json").read_text())["keys"]
    assert pinned and all(k["kid"] and k["public_key"] for k in pinned), pinned
    written = yaml.safe_load(config.read_text())
    assert written == {
        "heartbeat_interval": 5,
        "pc_id": "e2e-1",
        "data_dir": str(data_dir.resolve()),
        "nats_urls": [backend.broker.url],
    }
    # The seed was made on "the machine": the backend only ever saw the public key.
    seed_line = (trust / "agent.creds").read_text().split("-----BEGIN USER NKEY SEED-----")[1]
    assert seed_line.split()[0] not in backend.log.read_text()

    # The same token again: refused, clearly; bad URL and unreachable backend: clear too.
    again = agent_cli(*command[1:], "--data-dir", str(tmp_path / "other"), "--pc-id", "e2e-2")
    assert again.returncode == 1 and "refused the token" in again.stderr, again.stderr
    bad = agent_cli("enroll", "ftp://nowhere", "tok", "--data-dir", str(tmp_path / "x"))
    assert bad.returncode == 1 and "not a backend URL" in bad.stderr
    down = agent_cli(
        "enroll", f"http://127.0.0.1:{free_port()}", "tok", "--data-dir", str(tmp_path / "y")
    )
    assert down.returncode == 1 and "cannot reach the backend" in down.stderr

    tokens = backend.kanade("agent", "tokens", "--json")
    assert tokens.returncode == 0 and token_info["token_id"] not in tokens.stdout
    enrolled = backend.kanade("agent", "enrolled", "--json")
    rows = [json.loads(line) for line in enrolled.stdout.splitlines()]
    assert [(r["pc_id"], r["status"]) for r in rows] == [("e2e-1", "active")]

    asyncio.run(_connect_heartbeat_revoke(backend, trust))

    enrolled = backend.kanade("agent", "enrolled", "--json")
    rows = [json.loads(line) for line in enrolled.stdout.splitlines()]
    assert [(r["pc_id"], r["status"]) for r in rows] == [("e2e-1", "revoked")]


async def _connect_heartbeat_revoke(backend: Backend, trust: Path) -> None:
    """The enrolled identity on the broker (what the agent's connection does with its trust
    dir): heartbeats land; ``kanade agent revoke`` drops it within 5 s and for good."""
    creds = BusCredentials.for_agent(trust, "e2e-1")
    gone = asyncio.Event()

    async def on_disconnect() -> None:
        gone.set()

    nc = await connect(
        backend.broker.url,
        name="e2e-1",
        retry_forever=False,
        credentials=creds,
        disconnected_cb=on_disconnect,
        reconnect_time_wait=0.2,
    )
    try:
        hb = Heartbeat(
            pc_id="e2e-1",
            agent_version="e2e",
            hostname="e2e-1",
            os_family="linux",
            groups=["web"],
            sent_at=system_clock(),
        )
        await nc.publish(s.heartbeat_subject("e2e-1"), encode(hb))
        await nc.flush()

        async def seen() -> bool:
            async with httpx.AsyncClient(base_url=backend.url) as http:
                return (await http.get("/api/agents/e2e-1")).status_code == 200

        await eventually(seen, "the enrolled agent's heartbeat", timeout=10)
        t0 = time.monotonic()
        revoked = await asyncio.to_thread(backend.kanade, "agent", "revoke", "e2e-1")
        assert revoked.returncode == 0, revoked.stderr
        assert "e2e-1: revoked" in revoked.stdout
        await asyncio.wait_for(gone.wait(), 5)
        assert time.monotonic() - t0 < 5
        with pytest.raises(BusConnectError):
            await connect(
                backend.broker.url, name="e2e-1 again", retry_forever=False, credentials=creds
            )
    finally:
        await nc.close()


def test_a_plain_agent_start_after_enrolment_uses_the_enrolled_identity(
    backend: Backend, tmp_path: Path
) -> None:
    made = json.loads(backend.kanade("agent", "enroll-token", "--json").stdout)
    data_dir, config = tmp_path / "agent-data", tmp_path / "agent.yaml"
    config.write_text("heartbeat_interval: 2\n")
    command = shlex.split(made["command"])
    done = agent_cli(
        *command[1:], "--pc-id", "e2e-run", "--data-dir", str(data_dir), "--config", str(config)
    )
    assert done.returncode == 0, done.stderr
    log = tmp_path / "agent.log"
    with open(log, "w") as fh:
        agent = subprocess.Popen(
            [str(BIN / "kanade-agent"), "run", "--config", str(config)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:

        def status() -> str | None:
            res = httpx.get(f"{backend.url}/api/agents/e2e-run", timeout=2)
            return res.json().get("status") if res.status_code == 200 else None

        wait_until(
            lambda: status() == "alive",
            "the enrolled agent heartbeats",
            timeout=20,
            diagnostics=log.read_text,
        )
        # a signed command reaches it through the consumer the backend provisioned
        ran = backend.kanade("run", "--pc", "e2e-run", "--json", "--", "echo enrolled")
        assert ran.returncode == 0 and "enrolled" in ran.stdout, ran.stdout + ran.stderr
        assert backend.kanade("agent", "revoke", "e2e-run").returncode == 0
        # cut off: the agent logs its disconnection and no longer reaches the broker
        wait_until(
            lambda: any(m in log.read_text() for m in ("disconnected", "connection closed")),
            "the agent disconnected",
            timeout=5,
            diagnostics=log.read_text,
        )
        # Re-enrolled while it runs: the same process comes back with its new identity
        # (nats-py gives a refused connection up for good; the agent connects again).
        again = json.loads(backend.kanade("agent", "enroll-token", "--json").stdout)
        command = shlex.split(again["command"])
        redone = agent_cli(
            *command[1:], "--pc-id", "e2e-run", "--data-dir", str(data_dir),
            "--config", str(config),
        )
        assert redone.returncode == 0, redone.stderr
        wait_until(
            lambda: log.read_text().count("connected to NATS") >= 2,
            "the running agent reconnected with its new credential",
            timeout=20,
            diagnostics=log.read_text,
        )
        back = backend.kanade("run", "--pc", "e2e-run", "--json", "--", "echo back")
        assert back.returncode == 0 and "back" in back.stdout, back.stdout + back.stderr
        assert agent.poll() is None, "the agent was never restarted"
    finally:
        terminate(agent)
