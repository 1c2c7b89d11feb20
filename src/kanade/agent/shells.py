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
