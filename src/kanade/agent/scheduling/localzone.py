"""This machine's local time zone, for ``tz: local`` schedules run by the agent."""

from __future__ import annotations

import contextlib
import functools
import os
from datetime import UTC, datetime, tzinfo
from pathlib import Path


@functools.cache
def local_zone() -> tzinfo:
    """This machine's zone as an IANA zone when it can be found (DST-aware), for
    ``tz: local`` schedules; the fixed current offset otherwise."""
    from zoneinfo import ZoneInfo

    candidates: list[str] = []
    tz_env = os.environ.get("TZ", "").lstrip(":")
    if tz_env:
        candidates.append(tz_env)
    with contextlib.suppress(OSError):
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text().strip())
    for name in candidates:
        with contextlib.suppress(Exception):
            return ZoneInfo(name)
    return datetime.now().astimezone().tzinfo or UTC
