"""The durable admission ledger (SPEC §3.2): every command admitted exactly once per pc.

An fsync'd journal of each request_id's moves (pending → launching → finished), replayed at
start. Why each state and the crash rules: docs/agent.md, "The admission ledger".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from kanade.agent.durable.fsutil import fsync_dir, open_private, private_dir
from kanade.core.signing import COMMAND_LIFETIME, MAX_FUTURE_SKEW

log = logging.getLogger(__name__)

JOURNAL = "journal.jsonl"
# Compact when the journal holds this many more lines than live entries.
_COMPACT_SLACK = 2000
REPLAY_HORIZON_S = (COMMAND_LIFETIME + MAX_FUTURE_SKEW).total_seconds()
"""How long an admitted request_id must be remembered: a command is accepted until its
signed expiry, at most this long after it was admitted, so a replay always meets it."""


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
        if retention_s < REPLAY_HORIZON_S:
            raise ValueError(
                f"ledger retention {retention_s:g}s is shorter than the command lifetime "
                f"({REPLAY_HORIZON_S:g}s): a replayed command could run twice"
            )
        self.dir = directory
        private_dir(self.dir)
        self.path = directory / JOURNAL
        self.retention_s = retention_s
        self.max_entries = max_entries
        self.durable = durable
        self._entries: dict[str, Entry] = {}
        self._fh: IO[bytes] | None = None
        self._lines = 0

    # --- journal -------------------------------------------------------------------
    def _append(self, record: dict[str, Any], *, durable: bool | None = None) -> None:
        if self._fh is None:
            # kept open for appends; owner-only: the journal holds full commands (env too)
            self._fh = os.fdopen(open_private(self.path, os.O_WRONLY | os.O_APPEND), "ab")
        self._fh.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
        self._fh.flush()
        if self.durable if durable is None else durable:
            os.fsync(self._fh.fileno())
        self._lines += 1

    def _write_entry(self, entry: Entry, *, durable: bool | None = None) -> None:
        # vars() rather than dataclasses.asdict(): no deep copy on the hot path.
        self._append(dict(vars(entry)), durable=durable)

    def _write_change(self, entry: Entry, *, durable: bool | None = None, **changes: Any) -> None:
        """A transition line: only what changed, so the command is not copied again."""
        self._append({"request_id": entry.request_id, **changes}, durable=durable)

    def load(self) -> None:
        """Replay the journal. Undecodable lines (a torn write) are skipped with a warning."""
        self._entries.clear()
        self._lines = 0
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            for number, line in enumerate(fh, 1):
                self._lines += 1
                try:
                    record = json.loads(line)
                    rid = record["request_id"]
                    if "digest" in record:
                        self._entries[rid] = Entry(**record)
                    elif rid in self._entries:
                        for key, value in record.items():
                            setattr(self._entries[rid], key, value)
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("ledger journal line %d is unreadable (%s); skipped", number, exc)
        self._maybe_compact()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _maybe_compact(self, *, force: bool = False) -> None:
        if not force and self._lines - len(self._entries) < _COMPACT_SLACK:
            return
        self.close()
        tmp = self.path.with_suffix(".compact")
        with os.fdopen(open_private(tmp, os.O_WRONLY | os.O_TRUNC), "wb") as fh:
            for entry in self._entries.values():
                fh.write(json.dumps(asdict(entry), separators=(",", ":")).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.dir)
        self._lines = len(self._entries)

    # --- transitions ---------------------------------------------------------------
    def admit(
        self,
        request_id: str,
        digest: str,
        command: str,
        now: float,
        *,
        extra: dict[str, str] | None = None,
    ) -> Admission:
        existing = self._entries.get(request_id)
        if existing is not None:
            return Admission.DUPLICATE if existing.digest == digest else Admission.CONFLICT
        entry = Entry(request_id, digest, "pending", now, now, command, extra=dict(extra or {}))
        self._write_entry(entry)
        self._entries[request_id] = entry
        return Admission.NEW

    def mark_launching(self, request_id: str, now: float) -> None:
        entry = self._entries[request_id]
        entry.state, entry.updated_at = "launching", now
        self._write_change(entry, state="launching", updated_at=now)

    def mark_finished(self, request_id: str, result: str, now: float) -> None:
        entry = self._entries[request_id]
        entry.state, entry.updated_at, entry.result, entry.queued = "finished", now, result, False
        self._write_change(entry, state="finished", updated_at=now, result=result, queued=False)

    def mark_queued(self, request_id: str) -> None:
        """The result reached the outbox. Not fsync'd: losing this only causes a
        harmless re-send (the broker and the backend both dedup by result_id)."""
        entry = self._entries.get(request_id)
        if entry is not None and not entry.queued:
            entry.queued = True
            self._write_change(entry, durable=False, queued=True)

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
        """Drop finished, queued entries past retention, then the oldest beyond the bound —
        never one a replay could still match (admitted within the replay horizon)."""
        done = [e for e in self._entries.values() if e.state == "finished" and e.queued]
        victims = [e for e in done if now - e.updated_at > self.retention_s]
        overflow = len(self._entries) - len(victims) - self.max_entries
        if overflow > 0:
            gone = {e.request_id for e in victims}
            rest = sorted(
                (
                    e
                    for e in done
                    if e.request_id not in gone and now - e.admitted_at > REPLAY_HORIZON_S
                ),
                key=lambda e: e.updated_at,
            )
            victims += rest[:overflow]
        for e in victims:
            self._entries.pop(e.request_id, None)
        if victims:
            # Dropped entries still have lines in the journal: compaction removes them.
            self._maybe_compact(force=True)
        return len(victims)
