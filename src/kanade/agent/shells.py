"""How each manifest shell is started on this OS, and whether it exists here."""

from __future__ import annotations

import sys
import time

from kanade.core.models.wire import Shell

IS_WINDOWS = sys.platform == "win32"

# PATH lookups cost ~50 us each and every command needs one; a shell installed
# (or removed) while the agent runs is noticed within this many seconds.
_WHICH_TTL_S = 60.0
_which_cache: dict[str, tuple[float, str | None]] = {}


def _which(name: str) -> str | None:
    now = time.monotonic()
    hit = _which_cache.get(name)
    if hit is not None and now - hit[0] < _WHICH_TTL_S:
        return hit[1]
    import shutil  # here: it loads bz2 and lzma, which an idle agent never needs (§10.2)

    found = shutil.which(name)
    _which_cache[name] = (now, found)
    return found


ARGV_SCRIPT_MAX = 16 * 1024
"""Bytes of script passed on the command line at most. Past that it goes through a file
(:func:`file_argv`): Linux takes 128 KiB per argument, Windows 32 KiB per command line, and
a script object may be megabytes (issue #15)."""

FILE_SUFFIX: dict[str, str] = {"python": ".py", "pwsh": ".ps1", "powershell": ".ps1",
                               "cmd": ".cmd", "sh": ".sh", "bash": ".sh"}  # fmt: skip


def file_argv(shell: Shell, path: str) -> list[str] | None:
    """The argv that runs the script file ``path`` with ``shell`` (see :func:`shell_argv`)."""
    argv = shell_argv(shell, path)
    if argv is None:
        return None
    if shell in ("pwsh", "powershell"):
        return [*argv[:-2], "-File", path]
    return [*argv[:-2], path] if shell != "cmd" else argv  # cmd /d /c <file>.cmd runs it


def shell_argv(shell: Shell, script: str) -> list[str] | None:
    """The argv that runs ``script`` with ``shell``, or None if that shell is unavailable."""
    if shell == "python":
        # The agent's own interpreter: always present, same version everywhere.
        return [sys.executable, "-c", script]
    if shell in ("sh", "bash"):
        exe = _which(shell)
        return [exe, "-c", script] if exe else None
    if shell == "pwsh":
        exe = _which("pwsh")
        return (
            [exe, "-NoLogo", "-NoProfile", "-NonInteractive", "-Command", script] if exe else None
        )
    if shell == "powershell":
        exe = _which("powershell.exe") if IS_WINDOWS else None
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
        exe = _which("cmd.exe") if IS_WINDOWS else None
        return [exe, "/d", "/c", script] if exe else None
    return None
