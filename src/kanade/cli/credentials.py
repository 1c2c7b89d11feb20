"""Tokens from ``kanade login``, stored per backend URL in
``$XDG_CONFIG_HOME/kanade/credentials.json`` (default ``~/.config``), mode 0600.

Keyed by URL so one operator can be logged in to a lab and a production backend at
once without one token ever being sent to the other. ``$KANADE_CREDENTIALS``
points elsewhere (tests, CI).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any


def credentials_path() -> Path:
    explicit = os.environ.get("KANADE_CREDENTIALS")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kanade" / "credentials.json"


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    # Created 0600 from the start (not chmod-ed afterwards): the token is never
    # readable by others, not even for an instant.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def stored_token(url: str) -> str | None:
    entry = _load(credentials_path()).get(url.rstrip("/"))
    token = entry.get("token") if isinstance(entry, dict) else None
    return token if isinstance(token, str) and token else None


def store(url: str, entry: dict[str, Any]) -> Path:
    path = credentials_path()
    data = _load(path)
    data[url.rstrip("/")] = entry
    _save(path, data)
    return path


def forget(url: str) -> bool:
    path = credentials_path()
    data = _load(path)
    if data.pop(url.rstrip("/"), None) is None:
        return False
    with contextlib.suppress(OSError):
        _save(path, data)
    return True
