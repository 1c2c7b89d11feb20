"""Containing each script's process tree (SPEC §3.4): a kill or a timeout ends all of it, and
so does the agent's own death — at once where the OS allows, else at its next start, before
it reports "outcome unknown".

* Linux: a cgroup v2 per script where this process may make one (:mod:`.cgroup`), else
  tracking (:mod:`.tracking`); the script's first process also dies with the agent
  (:mod:`kanade.deathsig`);
* macOS: process group + tracked descendants (:mod:`.tracking`);
* Windows: a job object per script, killed when the agent dies (:mod:`.jobobject`).

Why each: docs/agent.md, "Process trees".
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Literal

from kanade.agent.containment.tree import RUN_ID_ENV, ProcessTree, until_empty
from kanade.agent.durable.fsutil import private_dir

__all__ = ["RUN_ID_ENV", "Containment", "Mode", "ProcessTree", "until_empty"]

log = logging.getLogger("kanade.agent")

Mode = Literal["auto", "tracking"]
MODES: tuple[Mode, ...] = ("auto", "tracking")
RECORDS_DIR = "running"


class Containment:
    """Makes each run's :class:`ProcessTree` and ends what a dead agent's runs left."""

    def __init__(self, data_dir: Path, pc_id: str, mode: Mode = "auto") -> None:
        self.records = data_dir / RECORDS_DIR
        with contextlib.suppress(OSError):  # a full disk at start: records are best effort
            private_dir(self.records)
        self.root: Path | None = None  # the agent's parent cgroup of script groups
        self.why = ""
        if sys.platform == "win32":
            self.kind = "job object"
        elif sys.platform.startswith("linux") and mode == "auto":
            from kanade.agent.containment.cgroup import agent_root, probe_cgroups

            probe = probe_cgroups()
            if probe.base is not None:
                self.root = agent_root(probe.base, pc_id, data_dir)
                self.kind = "cgroup v2"
            else:
                self.kind, self.why = "descendant tracking", probe.reason
        else:
            self.kind = "descendant tracking"
            self.why = "set by the containment setting" if mode == "tracking" else ""

    def describe(self) -> str:
        where = f" ({self.root})" if self.root is not None else ""
        why = f"; cgroup v2 not used: {self.why}" if self.why else ""
        return f"script trees are contained by {self.kind}{where}{why}"

    def tree(self, run_id: str) -> ProcessTree:
        if self.root is not None:
            from kanade.agent.containment.cgroup import CgroupTree

            return CgroupTree(run_id, self.root / run_id, self.records / f"{run_id}.json")
        if sys.platform == "win32":
            from kanade.agent.containment.jobobject import JobTree

            return JobTree(run_id)
        from kanade.agent.containment.tracking import TrackedTree

        return TrackedTree(run_id, self.records / f"{run_id}.json")

    def end_leftovers(self, run_id: str) -> int:
        """Kill what run ``run_id`` of a dead agent left running; how many processes."""
        killed = 0
        if self.root is not None:
            from kanade.agent.containment.cgroup import end_group

            killed += end_group(self.root / run_id)
        record = self.records / f"{run_id}.json"
        # Also with cgroups: a run whose move into its group failed was tracked.
        if sys.platform != "win32" and (self.root is None or record.exists()):
            from kanade.agent.containment.tracking import end_leftovers

            killed += end_leftovers(run_id, record)
        return killed

    def sweep(self) -> None:
        """Forget what earlier runs left that nobody will ask about: records, and the groups
        of scripts that ended (a daemon started on purpose keeps its group until it ends)."""
        for record in self.records.glob("*.json"):
            with contextlib.suppress(OSError):
                record.unlink()
        if self.root is not None and self.root.is_dir():
            from kanade.agent.containment.cgroup import remove_group

            for group in self.root.iterdir():
                if group.is_dir():
                    remove_group(group)

    def close(self) -> None:
        """The agent stops: its parent group goes if no script group is left in it."""
        if self.root is not None:
            from kanade.agent.containment.cgroup import remove_group

            remove_group(self.root)
