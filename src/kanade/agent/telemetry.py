"""Heartbeat contents (SPEC §2.7): who this agent is and how much it costs the machine.

CPU time comes from :func:`os.times` everywhere. On Linux the resident memory and the boot
time are read from ``/proc`` (where psutil reads them too); other systems ask psutil, imported
only there: on Linux its modules would add about half a MB to every agent's resident memory
(SPEC §10.2) for two numbers.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import sys
import time
from datetime import UTC, datetime
from typing import Any

from kanade import __version__
from kanade.core.models.wire import Heartbeat

_LINUX = sys.platform.startswith("linux")


def _psutil() -> Any:
    import psutil

    return psutil


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def rss_bytes() -> int:
    """This process's resident set size, in bytes."""
    if _LINUX:
        try:
            with open("/proc/self/statm", "rb") as fh:
                resident_pages = int(fh.read().split()[1])
            return resident_pages * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
    return int(_psutil().Process().memory_info().rss)


@functools.cache  # once per process: a swarm builds thousands of Telemetry objects
def boot_time() -> float:
    """When the machine booted, in seconds since the epoch."""
    if _LINUX:
        try:
            with open("/proc/stat", "rb") as fh:
                for line in fh:
                    if line.startswith(b"btime"):
                        return float(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return float(_psutil().boot_time())


class Telemetry:
    def __init__(self) -> None:
        # CPU% is measured from one heartbeat to the next (the first covers start-up).
        self._cpu_at = (time.monotonic(), _cpu_seconds())
        self._boot = datetime.fromtimestamp(boot_time(), UTC)

    def cpu_percent(self) -> float:
        """CPU used since the previous call, in % of one core (psutil's definition)."""
        wall0, cpu0 = self._cpu_at
        wall, cpu = time.monotonic(), _cpu_seconds()
        self._cpu_at = (wall, cpu)
        if wall <= wall0:
            return 0.0
        return round(max(0.0, cpu - cpu0) / (wall - wall0) * 100, 1)

    def heartbeat(
        self,
        *,
        pc_id: str,
        groups: list[str],
        last_command_at: datetime | None,
        queue_length: int,
        running: int,
        schedule_set_version: str | None = None,
    ) -> Heartbeat:
        return Heartbeat(
            pc_id=pc_id,
            agent_version=__version__,
            hostname=socket.gethostname(),
            os_family=platform.system().lower() or "unknown",
            os_version=platform.release(),
            boot_time=self._boot,
            cpu_percent=self.cpu_percent(),
            rss_bytes=rss_bytes(),
            groups=sorted(groups),
            schedule_set_version=schedule_set_version,
            last_command_at=last_command_at,
            queue_length=queue_length,
            running=running,
            sent_at=datetime.now(UTC),
        )
