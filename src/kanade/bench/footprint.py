"""Footprint: idle RSS and CPU of one real agent, and of the backend serving a swarm.

CPU% is CPU time consumed over the window divided by wall time (100% = one core).
RSS (the SPEC §10.2 figure) counts every resident page the process maps, shared library
pages included; the agent line also carries, where the OS reports them, its PSS (shared
pages divided among the processes that map them) and USS (pages only it holds, what
stopping it would give back), sampled once at the end of the window.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import psutil

from kanade.bench.common import Stack, emit


def _find(root_pid: int, needle: str) -> psutil.Process:
    for child in psutil.Process(root_pid).children(recursive=True):
        try:
            if needle in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    raise SystemExit(f"no process matching {needle!r} under pid {root_pid}")


def _sample(proc: psutil.Process, seconds: float) -> tuple[list[float], float]:
    """RSS samples (MB) once a second, and CPU% over the whole window."""
    cpu0 = sum(proc.cpu_times()[:2])
    t0 = time.monotonic()
    rss = []
    while time.monotonic() - t0 < seconds:
        rss.append(proc.memory_info().rss / 1e6)
        time.sleep(1.0)
    cpu = (sum(proc.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0) * 100
    return rss, cpu


def _shared_split(proc: psutil.Process) -> dict[str, float]:
    """PSS and USS in MB, when the platform reports them (Linux, via smaps)."""
    try:
        full = proc.memory_full_info()
    except (psutil.Error, OSError):
        return {}
    return {
        f"{name}_mb": round(getattr(full, name) / 1e6, 2)
        for name in ("pss", "uss")
        if hasattr(full, name)
    }


def run(seconds: float = 60.0, swarm: int = 1000) -> None:
    with tempfile.TemporaryDirectory(prefix="kanade-bench-") as tmp:
        stack = Stack(Path(tmp), agents=1)
        try:
            agent = _find(stack.up.proc.pid, "kanade.agent.cli")
            time.sleep(5)  # let start-up work (imports, first heartbeat, KV sync) finish
            rss, cpu = _sample(agent, seconds)
            emit("footprint.agent.rss", {"window_s": seconds}, rss, unit="MB",
                 **_shared_split(agent))
            emit("footprint.agent.cpu", {"window_s": seconds}, [cpu], unit="%")
            if swarm > 0:
                stack.swarm(swarm)
                backend = _find(stack.up.proc.pid, "kanade.backend.cli")
                rss, cpu = _sample(backend, seconds)
                params = {"window_s": seconds, "swarm_agents": swarm}
                emit("footprint.backend.rss", params, rss, unit="MB")
                emit("footprint.backend.cpu", params, [cpu], unit="%")
        finally:
            stack.stop()
