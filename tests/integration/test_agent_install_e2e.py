"""`kanade-agent install` end to end (SPEC §3.9, issue #17 item 2): a real backend and secured
broker, the one-time token given on stdin (never on the command line), the install enrols the
machine and writes the config and the unit; the agent started the way the unit starts it
heartbeats and runs a command; `kanade-agent status` reports it running, connected and
heartbeating; uninstall stops and removes the service, keeping the identity."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from test_enrolment_e2e import Backend, agent_cli, backend  # noqa: F401 - the fixture

from polling import wait_until
from stack import BIN, terminate

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores


def test_install_enrols_writes_the_unit_and_status_reports_the_running_agent(
    backend: Backend,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    made = json.loads(backend.kanade("agent", "enroll-token", "--group", "web",
                                     "--json").stdout)
    root = tmp_path / "root"
    done = agent_cli("install", "--root", str(root), "--manager", "systemd",
                     "--pc-id", "inst-1", "--enroll", backend.url, stdin=made["token"] + "\n")
    assert done.returncode == 0, done.stderr
    assert "enrolled as inst-1" in done.stdout
    unit = (root / "etc/systemd/system/kanade-agent.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert argv[-4:] == ["kanade.agent", "run", "--config", "/etc/kanade/agent.yaml"]
    config_file = root / "etc/kanade/agent.yaml"
    config = yaml.safe_load(config_file.read_text())
    assert config["pc_id"] == "inst-1"
    assert config["data_dir"] == "/var/lib/kanade/agent"
    assert config["nats_urls"] == [backend.broker.url]
    data = root / "var/lib/kanade/agent"
    assert (data / "trust" / "agent.creds").stat().st_mode & 0o777 == 0o600
    assert made["token"] not in unit and made["token"] not in config_file.read_text()

    status = agent_cli("status", "--root", str(root), "--manager", "systemd")
    assert status.returncode == 3 and "no report" in status.stdout

    # The unit's command line, with the staged paths (the machine's root is `root`).
    log = tmp_path / "agent.log"
    config_file.write_text(config_file.read_text() + "heartbeat_interval: 1\n")
    with open(log, "w") as fh:
        agent = subprocess.Popen(
            [str(BIN / "kanade-agent"), "run", "--config", str(config_file),
             "--data-dir", str(data)],
            stdout=fh, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
    try:
        def reported() -> bool:
            found = agent_cli("status", "--root", str(root), "--manager", "systemd", "--json")
            answer = json.loads(found.stdout)
            return bool(answer["connected"] and (answer["agent"] or {}).get("last_heartbeat_at"))

        wait_until(reported, "status: running, connected, heartbeating", timeout=30,
                   diagnostics=log.read_text)
        status = agent_cli("status", "--root", str(root), "--manager", "systemd")
        assert "inst-1, version" in status.stdout and "running" in status.stdout
        assert "connected since" in status.stdout and "last sent" in status.stdout
        ran = backend.kanade("run", "--pc", "inst-1", "--json", "--", "echo installed")
        assert ran.returncode == 0 and "installed" in ran.stdout, ran.stdout + ran.stderr
        res = httpx.get(f"{backend.url}/api/agents/inst-1", timeout=5).json()
        assert "web" in res["groups"]
    finally:
        terminate(agent)

    done = agent_cli("uninstall", "--root", str(root), "--manager", "systemd")
    assert done.returncode == 0, done.stderr
    assert "would run: systemctl disable --now kanade-agent" in done.stdout
    assert not (root / "etc/systemd/system/kanade-agent.service").exists()
    assert config_file.exists() and (data / "trust" / "agent.creds").exists()
