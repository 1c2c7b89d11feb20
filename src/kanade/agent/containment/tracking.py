"""Where no cgroup can hold a script (macOS, Linux without a usable cgroup v2): its process
group, plus every descendant seen while it runs, plus whatever carries its run id in its
environment — a daemon that double-forked out of the tree is nobody's descendant any more,
but it still has the environment it inherited.

Descendants are snapshot every :data:`SNAPSHOT_S` and written to a record file (pid and
creation time each: a recycled pid is never mistaken for ours), which the next start of a
dead agent reads to end what its scripts left behind. psutil is imported only here, when a
script runs (SPEC §10.2: an idle Linux agent never loads it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

from kanade.agent.containment.tree import RUN_ID_ENV, ProcessTree
from kanade.agent.durable.fsutil import atomic_write

log = logging.getLogger("kanade.agent")

SNAPSHOT_S = 0.5
_SAME_START_S = 0.01  # psutil's create times are exact to the clock tick


def _psutil() -> Any:
    import psutil

    return psutil


Known = dict[int, float]  # pid -> creation time


def _alive(pid: int, created: float) -> Any | None:
    """The process ``pid`` if it is still the one created at ``created`` (not a recycled pid)."""
    psutil = _psutil()
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - created) > _SAME_START_S:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def marked(run_id: str) -> Known:
    """Every process whose environment says it belongs to run ``run_id``."""
    psutil = _psutil()
    found: Known = {}
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if proc.pid != os.getpid() and proc.environ().get(RUN_ID_ENV) == run_id:
                found[proc.pid] = proc.create_time()
    return found


def kill_known(known: Known, sig: int = signal.SIGKILL) -> int:
    """Signal those of ``known`` that are still the same processes; how many were."""
    hit = 0
    for pid, created in known.items():
        proc = _alive(pid, created)
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.send_signal(sig)
                hit += 1
    return hit


def read_record(path: Path) -> Known:
    try:
        raw = json.loads(path.read_bytes())
        return {int(pid): float(created) for pid, created in raw["pids"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


class TrackedTree(ProcessTree):
    kind = "descendant tracking"

    def __init__(self, run_id: str, record: Path) -> None:
        super().__init__(run_id)
        self.record = record
        self.known: Known = {}
        self._task: asyncio.Task[None] | None = None

    async def started(self, proc: asyncio.subprocess.Process) -> None:
        await super().started(proc)
        self._snapshot()
        self._task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_S)
            self._snapshot()

    def _snapshot(self) -> None:
        if self.pid is None:
            return
        psutil = _psutil()
        before = len(self.known)
        try:
            leader = psutil.Process(self.pid)
            self.known.setdefault(self.pid, leader.create_time())
            for child in leader.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.known.setdefault(child.pid, child.create_time())
        except psutil.Error:
            return  # the leader is gone: what it left is found by its environment
        if len(self.known) != before:
            self._write_record()

    def _write_record(self) -> None:
        data = json.dumps({"pids": sorted(self.known.items())}).encode()
        # Not fsync'd: after a power loss there is no process left to end.
        with contextlib.suppress(OSError):  # a full disk: the environment still tells
            atomic_write(self.record, data, durable=False)

    def signal(self, sig: int) -> None:
        super().signal(sig)
        self._snapshot()
        self.known.update(marked(self.run_id))
        kill_known(self.known, sig)

    def empty(self) -> bool:
        return super().empty() and not any(_alive(p, c) for p, c in self.known.items())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        with contextlib.suppress(OSError):
            self.record.unlink()


def end_leftovers(run_id: str, record: Path) -> int:
    """Kill what a dead agent's run ``run_id`` left (from its record and the environment);
    returns how many processes were killed."""
    known = read_record(record)
    known.update(marked(run_id))
    killed = kill_known(known)
    with contextlib.suppress(OSError):
        record.unlink()
    return killed
