"""The durable admission ledger (SPEC §3.2): every command admitted exactly once per pc.

One small JSON file per request_id, replaced atomically (fsync'd) on every
state change, so a crash at any instant leaves each entry in exactly one of:

* ``pending``   — admitted, not started: after a crash it runs;
* ``launching`` — the script may have started: after a crash it is reported as
  "outcome unknown" and never re-run (running it twice is worse than not knowing);
* ``finished``  — the result is recorded in the entry; ``queued`` tells whether it
  already reached the outbox. After a crash an unqueued result is re-queued.

Entries are kept for ``retention_s`` (longer than the command stream's max age,
so a replayed command is still recognised as a duplicate) and at most
``max_entries`` finished entries, oldest pruned first.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

from kanade.agent.fsutil import atomic_write, remove

log = logging.getLogger(__name__)


class Admission(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass
class Entry:
    request_id: str
    digest: str
    state: str  # pending | launching | finished
    admitted_at: float
    updated_at: float
    command: str  # the command JSON as received, so a pending one can run after a crash
    result: str | None = None
    queued: bool = False
    extra: dict[str, str] = field(default_factory=dict)


def command_digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class Ledger:
    def __init__(
        self,
        directory: Path,
        *,
        retention_s: float = 8 * 86400,
        max_entries: int = 50_000,
        durable: bool = True,
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.retention_s = retention_s
        self.max_entries = max_entries
        self.durable = durable
        self._entries: dict[str, Entry] = {}

    # --- persistence ---------------------------------------------------------------
    def _path(self, request_id: str) -> Path:
        # request ids are minted by the backend; hash them so any string is a safe name.
        return self.dir / f"{hashlib.sha256(request_id.encode()).hexdigest()[:40]}.json"

    def _write(self, entry: Entry, *, durable: bool | None = None) -> None:
        atomic_write(
            self._path(entry.request_id),
            json.dumps(asdict(entry)).encode(),
            durable=self.durable if durable is None else durable,
        )

    def load(self) -> None:
        """Read every entry from disk; a corrupt file is set aside with a warning."""
        self._entries.clear()
        for path in self.dir.glob("*.json"):
            try:
                data = json.loads(path.read_bytes())
                entry = Entry(**data)
            except (OSError, ValueError, TypeError) as exc:
                log.warning("ledger entry %s is corrupt (%s); moved aside", path.name, exc)
                path.replace(path.with_suffix(".corrupt"))
                continue
            self._entries[entry.request_id] = entry

    # --- transitions ---------------------------------------------------------------
    def admit(self, request_id: str, digest: str, command: str, now: float) -> Admission:
        existing = self._entries.get(request_id)
        if existing is not None:
            return Admission.DUPLICATE if existing.digest == digest else Admission.CONFLICT
        entry = Entry(request_id, digest, "pending", now, now, command)
        self._write(entry)
        self._entries[request_id] = entry
        return Admission.NEW

    def mark_launching(self, request_id: str, now: float) -> None:
        entry = self._entries[request_id]
        entry.state, entry.updated_at = "launching", now
        self._write(entry)

    def mark_finished(self, request_id: str, result: str, now: float) -> None:
        entry = self._entries[request_id]
        entry.state, entry.updated_at, entry.result, entry.queued = "finished", now, result, False
        self._write(entry)

    def mark_queued(self, request_id: str) -> None:
        """The result reached the outbox. Not fsync'd: losing this only causes a
        harmless re-send (the broker and the backend both dedup by result_id)."""
        entry = self._entries.get(request_id)
        if entry is not None and not entry.queued:
            entry.queued = True
            self._write(entry, durable=False)

    # --- queries -------------------------------------------------------------------
    def get(self, request_id: str) -> Entry | None:
        return self._entries.get(request_id)

    def in_state(self, state: str) -> list[Entry]:
        return sorted(
            (e for e in self._entries.values() if e.state == state), key=lambda e: e.admitted_at
        )

    def __len__(self) -> int:
        return len(self._entries)

    def prune(self, now: float) -> int:
        """Drop finished, queued entries past retention, then the oldest beyond the bound."""
        done = [e for e in self._entries.values() if e.state == "finished" and e.queued]
        victims = [e for e in done if now - e.updated_at > self.retention_s]
        overflow = len(self._entries) - len(victims) - self.max_entries
        if overflow > 0:
            gone = {e.request_id for e in victims}
            rest = sorted((e for e in done if e.request_id not in gone), key=lambda e: e.updated_at)
            victims += rest[:overflow]
        for e in victims:
            remove(self._path(e.request_id))
            self._entries.pop(e.request_id, None)
        return len(victims)
