"""What a running agent leaves for ``kanade-agent status``: a small JSON file in its data dir,
rewritten every few seconds and at once when the connection changes.

``status`` reads it without the broker or the backend: version, pid (alive or not), whether the
agent is connected, since when, and when it last sent a heartbeat. Plain text, no fsync: it is
a report, not state (a torn or missing file reads as "no report").
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from kanade import __version__
from kanade.core.instants import Clock, format_instant, system_clock
from kanade.worker import Worker

STATUS_FILE = "agent-status.json"
INTERVAL_S = 5.0


def status_path(data_dir: Path) -> Path:
    return data_dir / STATUS_FILE


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


class StatusReporter(Worker):
    name = "status file"

    def __init__(
        self,
        path: Path,
        *,
        pc_id: str,
        connected: Callable[[], bool],
        last_heartbeat: Callable[[], datetime | None],
        clock: Clock = system_clock,
    ) -> None:
        super().__init__(interval=INTERVAL_S)
        self.path = path
        self.pc_id = pc_id
        self._connected = connected
        self._last_heartbeat = last_heartbeat
        self._clock = clock
        self._started_at = clock()
        self._since: datetime | None = None
        self._was: bool | None = None

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        connected = self._connected()
        if connected != self._was:
            self._was, self._since = connected, now
        beat = self._last_heartbeat()
        return {
            "pc_id": self.pc_id,
            "version": __version__,
            "pid": os.getpid(),
            "artefact": os.environ.get("KANADE_AGENT_ARTEFACT"),
            "started_at": format_instant(self._started_at),
            "connected": connected,
            "connected_changed_at": format_instant(self._since) if self._since else None,
            "last_heartbeat_at": format_instant(beat) if beat else None,
            "written_at": format_instant(now),
        }

    def write(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            tmp.write_text(json.dumps(self.snapshot(), sort_keys=True) + "\n")
            os.replace(tmp, self.path)
        except OSError:
            pass  # a full disk is reported elsewhere; this is only a report

    async def step(self) -> None:
        self.write()
