"""The service definitions (SPEC §3.9), against golden files whose every line says why it is
there: systemd's unit (also checked by `systemd-analyze verify`), launchd's plist (parsed by
plistlib as launchd would) and the Windows service's sc.exe commands. Regenerate the golden
files after a deliberate change with KANADE_UPDATE_GOLDEN=1."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest

from kanade.agent.service import launchd, systemd, windows
from kanade.agent.service.spec import LAUNCHD_LABEL, ServiceSpec

GOLDEN = Path(__file__).parent / "golden"

LINUX = ServiceSpec(
    program=("/usr/bin/python3", "/var/lib/kanade/agent/releases/1.2.3/kanade-agent.pyz"),
    config=PurePosixPath("/etc/kanade/agent.yaml"),
    data_dir=PurePosixPath("/var/lib/kanade/agent"),
)
MAC = ServiceSpec(
    program=("/usr/local/bin/python3", "/Library/Application Support/kanade/agent/releases/"
             "1.2.3/kanade-agent.pyz"),
    config=PurePosixPath("/Library/Application Support/kanade/agent.yaml"),
    data_dir=PurePosixPath("/Library/Application Support/kanade/agent"),
)
WIN = ServiceSpec(
    program=(r"C:\Program Files\Python311\python.exe",
             r"C:\ProgramData\kanade\agent\releases\1.2.3\kanade-agent.pyz"),
    config=PureWindowsPath(r"C:\ProgramData\kanade\agent.yaml"),
    data_dir=PureWindowsPath(r"C:\ProgramData\kanade\agent"),
)


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("KANADE_UPDATE_GOLDEN"):
        path.write_bytes(text.encode())
    assert path.read_bytes().decode() == text, f"{name} changed: review, then regenerate"


def test_systemd_unit_matches_its_golden_file() -> None:
    _golden("kanade-agent.service", systemd.unit(LINUX))


def test_launchd_plist_matches_its_golden_file_and_parses() -> None:
    text = launchd.plist(MAC)
    _golden("io.kanade.agent.plist", text)
    parsed = plistlib.loads(text.encode())
    assert parsed["Label"] == LAUNCHD_LABEL
    assert parsed["ProgramArguments"] == [*MAC.program, "run", "--config", str(MAC.config)]
    assert parsed["KeepAlive"] is True and parsed["RunAtLoad"] is True
    assert parsed["AbandonProcessGroup"] is False
    assert parsed["Umask"] == 0o077


def test_windows_commands_match_their_golden_file() -> None:
    text = windows.script(windows.install_commands(WIN) + windows.uninstall_commands())
    _golden("kanade-agent-service.cmd", text)
    create = windows.install_commands(WIN)[0][1]
    assert create[create.index("binPath=") + 1] == (
        '"C:\\Program Files\\Python311\\python.exe" '
        "C:\\ProgramData\\kanade\\agent\\releases\\1.2.3\\kanade-agent.pyz service "
        "--config C:\\ProgramData\\kanade\\agent.yaml"
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="needs systemd-analyze (Debian: apt-get install systemd)")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """ExecStart must name a real executable for `verify`: this interpreter."""
    spec = ServiceSpec(
        program=(sys.executable, "-m", "kanade.agent"),
        config=PurePosixPath(tmp_path / "with space" / "agent.yaml"),
        data_dir=PurePosixPath(tmp_path / "data"),
    )
    unit = tmp_path / "kanade-agent.service"
    unit.write_text(systemd.unit(spec))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "kanade-agent.service" not in done.stderr, done.stderr  # no warning about it
