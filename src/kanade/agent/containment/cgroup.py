"""Linux: each script in a cgroup v2 of its own — nothing it starts can leave it (``setsid``
and double forks included), ``cgroup.kill`` ends all of it at once, and the next start of a
dead agent finds its scripts' groups by name.

Usable when a cgroup v2 hierarchy is mounted and this process may create groups under its
own and move processes into them (root, or a delegated subtree: systemd ``Delegate=yes``).
The script is started behind a one-line gate (``read`` on its stdin): it is moved into its
group before it can fork anything, then let go. Design: docs/agent.md, "Process trees".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kanade.agent.containment.tracking import TrackedTree
from kanade.agent.containment.tree import ProcessTree

log = logging.getLogger("kanade.agent")

# The gate: wait for the agent's newline (it has moved us into the group by then), then
# become the script with stdin from /dev/null. EOF instead (the agent died): never run it.
_GATE = 'read -r _ || exit 1; exec "$@" </dev/null'
_KILL_LOOPS = 50


@dataclass(frozen=True)
class CgroupProbe:
    base: Path | None  # this process's own group, where script groups are made; None: unusable
    reason: str


def _cgroup2_mount() -> Path | None:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            fields = line.split()
            if " - " in line and line.split(" - ", 1)[1].split()[0] == "cgroup2":
                return Path(fields[4])
    return None


def _own_group() -> str | None:
    with open("/proc/self/cgroup", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("0::"):
                return line[3:].strip()
    return None


@functools.cache  # once per process: a swarm has thousands of identities
def probe_cgroups() -> CgroupProbe:
    """Whether script groups can be made here, and where (or why not)."""
    if not sys.platform.startswith("linux"):
        return CgroupProbe(None, "not Linux")
    try:
        mount, own = _cgroup2_mount(), _own_group()
    except OSError as exc:
        return CgroupProbe(None, f"cannot read /proc: {exc}")
    if mount is None:
        return CgroupProbe(None, "no cgroup v2 hierarchy is mounted")
    if own is None:
        return CgroupProbe(None, "this process is in no cgroup v2 group")
    base = mount / own.lstrip("/")
    probe = base / f"kanade-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError as exc:
        return CgroupProbe(None, f"cannot create a group under {base}: {exc.strerror}")
    try:
        if not os.access(probe / "cgroup.procs", os.W_OK) or not os.access(
            base / "cgroup.procs", os.W_OK
        ):
            return CgroupProbe(None, f"may not move processes under {base}")
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()
    return CgroupProbe(base, f"cgroup v2 under {base}")


def agent_root(base: Path, pc_id: str, data_dir: Path) -> Path:
    """This agent's parent group of script groups: one per pc_id AND data dir (two agents
    of the same name on one machine — tests — never share it)."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]
    return base / f"kanade-{pc_id}-{digest}"


def _procs(group: Path) -> list[int]:
    try:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def populated(group: Path) -> bool:
    try:
        for line in (group / "cgroup.events").read_text().splitlines():
            if line.startswith("populated "):
                return line.split()[1] != "0"
    except OSError:
        return False  # gone
    return bool(_procs(group))


def kill_group(group: Path) -> None:
    """SIGKILL every process in ``group`` (``cgroup.kill``, Linux ≥ 5.14; else one by one
    until none is left: a fork meanwhile lands in the group too)."""
    try:
        (group / "cgroup.kill").write_text("1")
        return
    except OSError:
        pass
    for _ in range(_KILL_LOOPS):
        pids = _procs(group)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def remove_group(group: Path) -> bool:
    """rmdir ``group`` if nothing runs in it any more."""
    try:
        group.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def end_group(group: Path, wait_s: float = 2.0) -> int:
    """Kill what a dead agent's script left in ``group`` and remove it; how many were killed."""
    if not group.is_dir():
        return 0
    killed = len(_procs(group))
    kill_group(group)
    give_up = time.monotonic() + wait_s
    while populated(group) and time.monotonic() < give_up:
        time.sleep(0.02)  # at start-up, before the agent serves anything
    remove_group(group)
    return killed


class CgroupTree(TrackedTree):
    """The script in its own group; should moving it there fail (a host that allowed the
    probe but not this), it is tracked instead, like on a host without cgroups."""

    kind = "cgroup v2"

    def __init__(self, run_id: str, group: Path, record: Path) -> None:
        super().__init__(run_id, record)
        self.group = group
        self.contained = False

    def argv(self, argv: list[str]) -> list[str]:
        return ["/bin/sh", "-c", _GATE, "kanade-gate", *argv]

    def stdin(self) -> int:
        return asyncio.subprocess.PIPE

    async def started(self, proc: asyncio.subprocess.Process) -> None:
        self.pid = proc.pid
        try:
            self.group.mkdir(parents=True, exist_ok=True)
            (self.group / "cgroup.procs").write_text(str(proc.pid))
            self.contained = True
        except OSError as exc:
            log.warning(
                "could not put %s into cgroup %s (%s): tracking its processes instead",
                self.run_id,
                self.group,
                exc,
            )
            await super().started(proc)
        stdin = proc.stdin
        if stdin is not None:  # let it go
            with contextlib.suppress(OSError, ConnectionError):
                stdin.write(b"\n")
                await stdin.drain()
            stdin.close()

    def signal(self, sig: int) -> None:
        if not self.contained:
            super().signal(sig)
            return
        ProcessTree.signal(self, sig)  # the group leader's process group, then the cgroup
        for pid in _procs(self.group):
            with contextlib.suppress(OSError):
                os.kill(pid, sig)

    def kill(self) -> None:
        if not self.contained:
            super().kill()
            return
        ProcessTree.kill(self)
        kill_group(self.group)

    def empty(self) -> bool:
        if not self.contained:
            return super().empty()
        return ProcessTree.empty(self) and not populated(self.group)

    def close(self) -> None:
        super().close()
        # A daemon the script left on purpose keeps the group; the next start removes it
        # once it is empty.
        if self.contained:
            remove_group(self.group)
