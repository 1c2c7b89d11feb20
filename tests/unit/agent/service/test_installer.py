"""`kanade-agent install | uninstall | status` on files under a temp root (SPEC §3.9): an install
writes the config, the program and the service definition and would run the manager's
commands; uninstall takes the service away and keeps config and data; --purge leaves nothing;
status reads the running agent's report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

import pytest
import yaml

from kanade import __version__
from kanade.agent.service.installer import InstallError, install, status, target_for, uninstall
from kanade.agent.service.statusfile import StatusReporter, read_status, status_path

SRC = Path(__file__).resolve().parents[4] / "src"
UNIT_FILES = {
    "systemd": "etc/systemd/system/kanade-agent.service",
    "launchd": "Library/LaunchDaemons/io.kanade.agent.plist",
    "windows": None,
}
CONFIGS = {
    "systemd": ("etc/kanade/agent.yaml", "var/lib/kanade/agent"),
    "launchd": ("Library/Application Support/kanade/agent.yaml",
                "Library/Application Support/kanade/agent"),
    "windows": ("ProgramData/kanade/agent.yaml", "ProgramData/kanade/agent"),
}


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("manager", ["systemd", "launchd", "windows"])
def test_install_uninstall_round_trip(manager: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    said: list[str] = []
    t = target_for(manager, config=None, data_dir=None, root=root, say=said.append)
    artefact = tmp_path / "kanade-agent.pyz"
    artefact.write_bytes(b"#!/usr/bin/env python3\nPK fake artefact")
    spec = install(t, settings={"pc_id": "web-1", "groups": ["web"], "nats_urls": None},
                   enrolment=None, python="/usr/bin/python3", artefact=artefact)
    config_rel, data_rel = CONFIGS[manager]
    program = f"{data_rel}/releases/{__version__}/kanade-agent.pyz"
    expected = {config_rel, program} | ({UNIT_FILES[manager]} if UNIT_FILES[manager] else set())
    assert _files(root) == expected
    assert (root / program).read_bytes() == artefact.read_bytes()
    config = yaml.safe_load((root / config_rel).read_text())
    assert config["pc_id"] == "web-1" and config["groups"] == ["web"]
    assert config["data_dir"] == str(t.data_dir)  # the service's path, not the staging one
    assert (root / config_rel).stat().st_mode & 0o777 == 0o600
    assert (root / data_rel).stat().st_mode & 0o777 == 0o700
    assert spec.program == ("/usr/bin/python3", str(t.data_dir / "releases" / __version__ /
                                                    "kanade-agent.pyz"))
    unit_file = UNIT_FILES[manager]
    if unit_file:
        assert str(t.data_dir / "releases") in (root / unit_file).read_text()
    would = [line for line in said if line.startswith("would run: ")]
    assert would, said
    # The agent ran and left its data: uninstall keeps it (and the config).
    (root / data_rel / "ledger").write_text("kept\n")
    uninstall(t)
    assert _files(root) == {config_rel, program, f"{data_rel}/ledger"}
    # A re-install over it keeps the data, then --purge leaves no file at all.
    install(t, settings={}, enrolment=None, python="/usr/bin/python3", artefact=artefact)
    assert yaml.safe_load((root / config_rel).read_text())["pc_id"] == "web-1"
    uninstall(t, purge=True)
    assert _files(root) == set()


def test_install_from_a_package_runs_python_m(tmp_path: Path) -> None:
    t = target_for("systemd", config=None, data_dir="/srv/kanade", root=tmp_path,
                   say=lambda _s: None)
    spec = install(t, settings={}, enrolment=None, python="/opt/venv/bin/python",
                   artefact=None)
    assert spec.argv() == ["/opt/venv/bin/python", "-m", "kanade.agent", "run", "--config",
                           "/etc/kanade/agent.yaml"]
    assert yaml.safe_load((tmp_path / "etc/kanade/agent.yaml").read_text())["data_dir"] == (
        "/srv/kanade")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"pc_id": "bad id"}, "pc_id 'bad id'"),
        ({"groups": ["ok", "no way"]}, "group 'no way'"),
        ({"heartbeat_intervall": 3}, "heartbeat_intervall"),
    ],
)
def test_a_bad_setting_is_refused_before_anything_is_written(
    tmp_path: Path, settings: dict[str, object], message: str
) -> None:
    t = target_for("systemd", config=None, data_dir=None, root=tmp_path, say=lambda _s: None)
    with pytest.raises(InstallError, match=message):
        install(t, settings=settings, enrolment=None)
    assert not (tmp_path / "etc/kanade/agent.yaml").exists()
    assert not (tmp_path / "etc/systemd").exists()


def test_paths_must_be_the_services_and_a_foreign_manager_needs_a_root(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="absolute"):
        target_for("systemd", config="rel/agent.yaml", data_dir=None, root=tmp_path)
    foreign = "launchd" if sys.platform != "darwin" else "systemd"
    with pytest.raises(InstallError, match="with --root"):
        target_for(foreign, config=None, data_dir=None, root=None)


def test_a_failing_manager_command_fails_the_install(tmp_path: Path) -> None:
    t = target_for(None, config=str(tmp_path / "a.yaml"), data_dir=str(tmp_path / "d"),
                   root=None, say=lambda _s: None,
                   runner=lambda argv: (1, "Failed to connect to bus"))
    if t.manager.name != "systemd":
        pytest.skip("the Linux manager")
    # no file under /etc in a unit test
    t.manager = type(t.manager)(t.manager.name, PurePosixPath(tmp_path / "unit.service"))
    with pytest.raises(InstallError, match=r"systemctl daemon-reload failed \(1\): Failed to "):
        install(t, settings={}, enrolment=None)


def _report(data: Path, *, connected: bool, pid: int, written: datetime) -> None:
    beat = written - timedelta(seconds=3)
    reporter = StatusReporter(status_path(data), pc_id="web-1", connected=lambda: connected,
                              last_heartbeat=lambda: beat, clock=lambda: written)
    reporter.write()
    doc = read_status(status_path(data))
    assert doc is not None
    doc["pid"] = pid
    status_path(data).write_text(json.dumps(doc))


def test_status_reads_the_agents_report(tmp_path: Path) -> None:
    t = target_for("systemd", config=None, data_dir=None, root=tmp_path, say=lambda _s: None)
    install(t, settings={"pc_id": "web-1"}, enrolment=None)
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    found = status(t, now=now)
    assert found.exit_code == 3 and "no report" in found.lines[1]
    data = tmp_path / "var/lib/kanade/agent"
    _report(data, connected=True, pid=os.getpid(), written=now - timedelta(seconds=2))
    found = status(t, now=now)
    assert found.exit_code == 0, found.lines
    text = "\n".join(found.lines)
    assert f"web-1, version {__version__}, pid {os.getpid()} running" in text
    assert "connected since" in text and "last sent 2026-01-01T11:59:55Z (5 s ago)" in text
    _report(data, connected=False, pid=os.getpid(), written=now)
    assert status(t, now=now).exit_code == 1
    _report(data, connected=True, pid=os.getpid(), written=now - timedelta(minutes=5))
    stale = status(t, now=now)
    assert stale.exit_code == 1 and "has not reported" in "\n".join(stale.lines)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _report(data, connected=True, pid=dead.pid, written=now)
    assert status(t, now=now).exit_code == 3


def test_the_cli_round_trip(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("KANADE_AGENT_CONFIG", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kanade.agent", *args, "--root",
                               str(tmp_path)], capture_output=True, text=True, env=env,
                              timeout=60)

    done = cli("install", "--pc-id", "web-1", "--nats-url", "tls://10.0.0.5:4222",
               "--manager", "systemd")
    assert done.returncode == 0, done.stderr
    assert "would run: systemctl restart kanade-agent" in done.stdout
    config = yaml.safe_load((tmp_path / "etc/kanade/agent.yaml").read_text())
    assert config["nats_urls"] == ["tls://10.0.0.5:4222"]
    done = cli("status", "--manager", "systemd", "--json")
    assert done.returncode == 3 and json.loads(done.stdout)["running"] is False
    done = cli("install", "--manager", "systemd", "--token-file", "x")
    assert done.returncode == 1 and "--token-file goes with --enroll" in done.stderr
    done = cli("uninstall", "--manager", "systemd", "--purge")
    assert done.returncode == 0, done.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
