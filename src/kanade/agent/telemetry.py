"""Heartbeat contents (SPEC §2.7): who this agent is and how much it costs the machine."""

from __future__ import annotations

import platform
import socket
from datetime import UTC, datetime

import psutil

from kanade import __version__
from kanade.core.models.wire import Heartbeat


class Telemetry:
    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)  # prime: the first call always returns 0.0
        self._boot = datetime.fromtimestamp(psutil.boot_time(), UTC)

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
            cpu_percent=self._proc.cpu_percent(None),
            rss_bytes=self._proc.memory_info().rss,
            groups=sorted(groups),
            schedule_set_version=schedule_set_version,
            last_command_at=last_command_at,
            queue_length=queue_length,
            running=running,
            sent_at=datetime.now(UTC),
        )
