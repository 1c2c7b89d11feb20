"""How each manifest shell is started on this OS, and whether it exists here."""

from __future__ import annotations

import shutil
import sys

from kanade.core.models.wire import Shell

IS_WINDOWS = sys.platform == "win32"


def shell_argv(shell: Shell, script: str) -> list[str] | None:
    """The argv that runs ``script`` with ``shell``, or None if that shell is unavailable."""
    if shell == "python":
        # The agent's own interpreter: always present, same version everywhere.
        return [sys.executable, "-c", script]
    if shell in ("sh", "bash"):
        exe = shutil.which(shell)
        return [exe, "-c", script] if exe else None
    if shell == "pwsh":
        exe = shutil.which("pwsh")
        return (
            [exe, "-NoLogo", "-NoProfile", "-NonInteractive", "-Command", script] if exe else None
        )
    if shell == "powershell":
        exe = shutil.which("powershell.exe") if IS_WINDOWS else None
        if not exe:
            return None
        return [
            exe,
            "-NoLogo",
            "-NoProfile",
            "-NonInteractive",
            "-ExecutionPolicy",
            "Bypass",
            "-Command",
            script,
        ]
    if shell == "cmd":
        exe = shutil.which("cmd.exe") if IS_WINDOWS else None
        return [exe, "/d", "/c", script] if exe else None
    return None
