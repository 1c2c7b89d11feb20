"""Heartbeats (SPEC §2.7): who this agent is and how much it costs the machine, sent on an
interval (changed live from KV config) and as the reply to a ping.

CPU time comes from :func:`os.times` everywhere. On Linux the resident memory and the boot
time are read from ``/proc`` (where psutil reads them too); other systems ask psutil, imported
only there: on Linux its modules would add about half a MB to every agent's resident memory
(SPEC §10.2) for two numbers.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import socket
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from kanade import __version__
from kanade.agent.durable.diskhealth import DiskHealth
from kanade.core import subjects
from kanade.core.agentconfig import DEFAULTS
from kanade.core.bounds import MAX_LIST_ITEMS
from kanade.core.instants import Clock, system_clock
from kanade.core.models.wire import (
    MAX_BYTES,
    MAX_DISK_ERROR,
    MAX_HELD,
    MAX_LOCAL_SETTINGS,
    AgentUpdate,
    Heartbeat,
    encode,
)
from kanade.worker import Worker

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
    def __init__(self, clock: Clock = system_clock) -> None:
        self._clock = clock
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
        update: dict[str, Any] | None = None,
        disk: DiskHealth | None = None,
        held_messages: int = 0,
        stopping: bool = False,
        local_config: dict[str, int | float | str] | None = None,
        static_groups: list[str] | None = None,
    ) -> Heartbeat:
        free = disk.free() if disk is not None else None
        error = disk.error if disk is not None else None
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
            update=AgentUpdate(**update) if update else None,
            # Bounded here as the wire model bounds them (a reader drops what it exceeds).
            disk_full=error is not None,
            disk_error=None if error is None else error[:MAX_DISK_ERROR],
            disk_free_bytes=None if free is None else max(0, min(free, MAX_BYTES)),
            held_messages=max(0, min(held_messages, MAX_HELD)),
            sent_at=self._clock(),
            stopping=stopping,
            local_config=local_config or None,
            static_groups=sorted(static_groups)[:MAX_LIST_ITEMS] if static_groups else None,
        )


def local_settings(local: Mapping[str, Any]) -> dict[str, int | float | str]:
    """The agent's own settings that differ from the built-in defaults, bounded as the
    wire model bounds them (at most 16, scalar values, short text)."""
    out: dict[str, int | float | str] = {}
    for key, value in sorted(local.items()):
        if len(out) >= MAX_LOCAL_SETTINGS or value == DEFAULTS.get(key, object()):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            continue
        if isinstance(value, str) and not 0 < len(value) <= 64:
            continue
        out[key[:64]] = value
    return out


class Heartbeats(Worker):
    """Builds and sends this agent's heartbeats: one every ``interval`` seconds, and one at
    once on :meth:`wake` or a live interval change."""

    name = "heartbeats"

    def __init__(
        self,
        *,
        pc_id: str,
        interval: float,
        connection: Callable[[], Client | None],
        groups: Callable[[], list[str]],
        last_command_at: Callable[[], datetime | None],
        load: Callable[[], tuple[int, int]],
        schedule_set_version: Callable[[], str | None],
        update: Callable[[], dict[str, Any] | None] = lambda: None,
        clock: Clock = system_clock,
        disk: DiskHealth | None = None,
        held_messages: Callable[[], int] = lambda: 0,
        local_config: Mapping[str, Any] | None = None,
        static_groups: list[str] | None = None,
    ) -> None:
        """``load`` says (queue length, running); ``update`` the self-update report;
        ``held_messages``: results and events kept in memory because the disk would not
        take them; ``local_config``: what the agent was started with, sent where it differs
        from the built-in defaults (the backend's ``config effective`` then shows the values
        it really applies); ``static_groups``: the groups of its own flags, which no KV
        change removes."""
        super().__init__(interval=interval)
        self.pc_id = pc_id
        self._connection = connection
        self._groups = groups
        self._last_command_at = last_command_at
        self._load = load
        self._schedule_set_version = schedule_set_version
        self._update = update
        self._disk = disk
        self._held_messages = held_messages
        self._telemetry = Telemetry(clock)
        self._local_config = local_settings(local_config or {})
        self._static_groups = list(static_groups or [])
        # The first heartbeat goes out once connected and re-synced (the agent sends it);
        # the loop's first one is due an interval later.
        self._first = True
        self.last_sent_at: datetime | None = None  # `kanade-agent status` shows it

    def build(self, *, stopping: bool = False) -> Heartbeat:
        queue_length, running = self._load()
        return self._telemetry.heartbeat(
            pc_id=self.pc_id,
            groups=self._groups(),
            last_command_at=self._last_command_at(),
            queue_length=queue_length,
            running=running,
            schedule_set_version=self._schedule_set_version(),
            update=self._update(),
            disk=self._disk,
            held_messages=self._held_messages(),
            stopping=stopping,
            local_config=self._local_config,
            static_groups=self._static_groups,
        )

    def set_interval(self, interval: float) -> None:
        """Change the interval live: a heartbeat goes out now, the next one ``interval`` later."""
        self.interval = interval
        self.wake()

    async def send(self) -> None:
        if self._stopping:
            return  # after the goodbye, a heartbeat would make a stopping agent look alive
        nc = self._connection()
        if nc is not None and nc.is_connected:
            with contextlib.suppress(Exception):
                await nc.publish(subjects.heartbeat_subject(self.pc_id), encode(self.build()))
                self.last_sent_at = self._telemetry._clock()

    async def goodbye(self, timeout: int = 2) -> bool:
        """A clean stop's last heartbeat (``stopping``): the backend shows this agent offline
        at once and no new exec expects it (SPEC §4.3). The loop is stopped first, so no
        ordinary heartbeat follows to make it look alive again. Flushed, so it is on the
        wire before the connection closes; True if it was sent."""
        self.stop()
        nc = self._connection()
        if nc is None or not nc.is_connected:
            return False
        try:
            await nc.publish(
                subjects.heartbeat_subject(self.pc_id), encode(self.build(stopping=True))
            )
            await nc.flush(timeout=timeout)
        except Exception:
            return False
        return True

    async def on_ping(self, msg: Msg) -> None:
        if msg.reply:
            await msg.respond(encode(self.build()))

    async def step(self) -> None:
        if self._first:
            self._first = False
            return
        await self.send()
