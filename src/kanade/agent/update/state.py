"""Which agent version runs here, and which are quarantined (SPEC §3.8): ``releases/state.json``
in the data dir, next to ``releases/<version>/kanade-agent.pyz``.

Read at every start by the hand-over (:func:`handover`, before anything heavy is imported):
when the state names a current version other than the one starting and its artefact is
there, the start becomes that version (``exec``, same pid: the service manager sees one
process). A switched-to version is *unconfirmed* until it has opened its command consumer
(:func:`confirm`); each start of an unconfirmed version counts, and after
:data:`~kanade.core.releases.ATTEMPTS` starts without confirming it is quarantined and the
previous version runs again — the rollback for a version that passed its check but cannot
start for real. Standard library only: it runs in every agent start.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kanade.core.bounds import MAX_TEXT_CHARS
from kanade.core.models.wire import MAX_QUARANTINED

ARTEFACT = "kanade-agent.pyz"
STATE_FILE = "state.json"
RELEASES_DIR = "releases"
LAUNCHED_ENV = "KANADE_AGENT_LAUNCHED"
ATTEMPTS = 3  # kanade.core.releases.ATTEMPTS (not imported here: stdlib only at start)


def releases_dir(data_dir: Path) -> Path:
    return data_dir / RELEASES_DIR


def artefact_path(data_dir: Path, version: str) -> Path:
    return releases_dir(data_dir) / version / ARTEFACT


@dataclass
class ReleaseState:
    current: str | None = None  # the version the next start runs (None: whatever starts)
    previous: str | None = None  # what a rollback returns to
    confirmed: bool = True
    boots: int = 0  # starts of an unconfirmed current
    quarantined: dict[str, str] = field(default_factory=dict)  # version -> why

    @classmethod
    def load(cls, data_dir: Path) -> ReleaseState:
        try:
            raw = json.loads((releases_dir(data_dir) / STATE_FILE).read_text())
        except (OSError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            return cls()
        quarantined = raw.get("quarantined")
        return cls(
            current=raw.get("current") if isinstance(raw.get("current"), str) else None,
            previous=raw.get("previous") if isinstance(raw.get("previous"), str) else None,
            confirmed=raw.get("confirmed") is not False,
            boots=int(raw.get("boots") or 0) if isinstance(raw.get("boots"), int) else 0,
            quarantined={str(k): str(v) for k, v in quarantined.items()}
            if isinstance(quarantined, dict) else {},
        )

    def save(self, data_dir: Path) -> None:
        directory = releases_dir(data_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / STATE_FILE
        tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        data = json.dumps(self.__dict__, sort_keys=True, indent=2) + "\n"
        with open(tmp, "w") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def handover(data_dir: Path, running: str) -> Path | None:
    """The artefact this start must become instead of running ``running`` itself, if any.

    Counts the start of an unconfirmed version once per start: in the process that hands
    over to it, or in the version itself when it was started directly (a process handed
    over to carries :data:`LAUNCHED_ENV`). Past :data:`ATTEMPTS` starts it is quarantined
    and the previous version runs again."""
    state = ReleaseState.load(data_dir)
    if state.current is None:
        return None
    launched = os.environ.get(LAUNCHED_ENV)
    if not state.confirmed and launched != state.current:
        state.boots += 1
        if state.boots > ATTEMPTS:
            state.quarantined[state.current] = (
                f"started {ATTEMPTS} times without connecting; rolled back"
            )
            state.current, state.previous = state.previous, None
            state.confirmed, state.boots = True, 0
        state.save(data_dir)
    if state.current is None or state.current == running or launched == state.current:
        return None  # (the last: the artefact named current is not that version)
    path = artefact_path(data_dir, state.current)
    return path if path.is_file() else None


def confirm(data_dir: Path, running: str) -> None:
    """``running`` started and connected: it stays the current version."""
    state = ReleaseState.load(data_dir)
    if state.current == running and not state.confirmed:
        state.confirmed, state.boots = True, 0
        state.save(data_dir)


@dataclass
class ReleaseStatus:
    """The running agent's view: what it reports in heartbeats and when an update starts.

    ``start(target, jitter)`` is called when the effective config asks for a version that is
    neither running nor quarantined (the updater module is imported only then: an agent that
    is current never loads it, SPEC §10.2)."""

    data_dir: Path
    running: str
    state: ReleaseState = field(init=False)
    phase: str = "idle"
    target: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        self.state = ReleaseState.load(self.data_dir)

    def on_target(self, target: Any, jitter: Any, start: Callable[[str, float], None]) -> None:
        from kanade.core.releases import update_wanted

        if target != self.target:
            # A new target: versions quarantined for an earlier one may be tried again later.
            changed = {v for v in self.state.quarantined if v != target}
            if changed and self.target is not None:
                for version in changed:
                    del self.state.quarantined[version]
                self.state.save(self.data_dir)
            self.target = target if isinstance(target, str) else None
            self.error = None
        wanted = update_wanted(target, self.running, frozenset(self.state.quarantined))
        if wanted is None:
            self.phase = "quarantined" if target in self.state.quarantined else "idle"
            return
        seconds = float(jitter) if isinstance(jitter, (int, float)) and jitter > 0 else 0.0
        start(wanted, seconds)

    def quarantine(self, version: str, why: str) -> None:
        self.state = ReleaseState.load(self.data_dir)
        self.state.quarantined[version] = why
        self.state.save(self.data_dir)
        self.phase, self.error = "quarantined", why

    def report(self) -> dict[str, Any] | None:
        if self.target is None and not self.state.quarantined and self.phase == "idle":
            return None
        return {
            "state": self.phase,
            "target": self.target,
            "quarantined": sorted(self.state.quarantined)[-MAX_QUARANTINED:],
            "error": None if self.error is None else self.error[:MAX_TEXT_CHARS],
        }
