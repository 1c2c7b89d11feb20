"""The zone ``tz: local`` means on the backend's machine."""

from __future__ import annotations

import os
from datetime import UTC, datetime, tzinfo
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@cache
def backend_local_zone() -> tzinfo:
    """The backend machine's zone for ``tz: local`` schedules: ``$TZ``, else the zone
    ``/etc/localtime`` links to, else the current fixed offset (no DST knowledge)."""
    candidates: list[str] = []
    env = os.environ.get("TZ", "").lstrip(":")
    if env:
        candidates.append(env)
    try:
        target = str(Path("/etc/localtime").resolve())
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in candidates:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return datetime.now(UTC).astimezone().tzinfo or UTC
