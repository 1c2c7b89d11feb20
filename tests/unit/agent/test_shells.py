"""How a script is started: on the command line when short, from a file when long (a long
argument fails to start: Linux takes 128 KiB per argument, Windows 32 KiB per line)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kanade.agent.shells import ARGV_SCRIPT_MAX, file_argv, shell_argv


def test_python_runs_a_file_with_the_agents_interpreter() -> None:
    assert file_argv("python", "/x/script.py") == [sys.executable, "/x/script.py"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shells")
def test_sh_runs_a_file_and_a_long_script_runs_from_one(tmp_path: Path) -> None:
    argv = shell_argv("sh", "true")
    assert argv is not None and file_argv("sh", "/x/s.sh") == [argv[0], "/x/s.sh"]
    script = "# pad\n" * (200 * 1024 // 6) + "echo ran\n"
    assert len(script) > 128 * 1024 > ARGV_SCRIPT_MAX
    path = f"{tmp_path}/s.sh"
    with open(path, "w") as fh:
        fh.write(script)
    file_cmd = file_argv("sh", path)
    assert file_cmd is not None
    out = subprocess.run(file_cmd, capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout == "ran\n"


def test_powershell_runs_a_file_with_dash_file() -> None:
    argv = file_argv("pwsh", "C:/x/s.ps1")
    if argv is not None:  # only where pwsh is installed
        assert argv[-2:] == ["-File", "C:/x/s.ps1"] and "-Command" not in argv
