"""On-disk state of the agent's local scheduler (SPEC §3.6), under ``<data_dir>/scheduler/``:
last successes, ticks and claims, the catalog cache and the decision totals — each replaced
atomically.

The files and their crash rules: docs/agent-local-scheduler.md, "On-disk state of the local
scheduler".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from kanade.agent.durable.diskhealth import DiskHealth
from kanade.agent.durable.fsutil import atomic_write, private_dir
from kanade.core.instants import format_instant, parse_instant

if TYPE_CHECKING:
    from kanade.core.scheduling import Claim

log = logging.getLogger("kanade.agent.scheduler")

STORE_DIR: Final = "scheduler"
SUCCESSES_FILE: Final = "successes.json"
STATE_FILE: Final = "state.json"
CATALOG_FILE: Final = "catalog.json"
DECISIONS_FILE: Final = "decisions.json"
RESULTS: Final = ("fired", "skipped", "missed")
FORMAT_VERSION: Final = 1


def _instant(value: Any) -> datetime | None:
    """A stored instant (``Z``, an offset, or none: UTC); None when it is not one."""
    try:
        return parse_instant(value)
    except ValueError:
        return None


@dataclass
class CachedCatalog:
    """What the agent applied, as raw JSON documents (re-parsed on load)."""

    schedules: dict[str, Any] = field(default_factory=dict)
    jobs: dict[str, Any] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    freeze: Any = None
    groups: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "schedules": self.schedules,
            "jobs": self.jobs,
            "digests": self.digests,
            "freeze": self.freeze,
            "groups": self.groups,
            "revoked": self.revoked,
        }


class SchedulerStore:
    """Reads and writes the three files; remembers what it last wrote to skip no-op writes."""

    def __init__(
        self, data_dir: Path, *, durable: bool = True, disk: DiskHealth | None = None
    ) -> None:
        self.dir = data_dir / STORE_DIR
        self.durable = durable
        # Told of every write (the agent's one view of a full disk, which says it once).
        self.disk = disk
        self._written: dict[str, bytes] = {}

    # --- low level ----------------------------------------------------------------------------
    def _read(self, name: str) -> bytes | None:
        path = self.dir / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read %s (%s); starting without it", path, exc)
            return None
        self._written[name] = data
        return data

    def _write(self, name: str, data: bytes) -> None:
        if self._written.get(name) == data:
            return
        try:
            private_dir(self.dir)
            atomic_write(self.dir / name, data, durable=self.durable)
        except OSError as exc:  # disk full: keep running from memory, say so (once)
            if self.disk is not None:
                self.disk.failed(exc, f"the local scheduler's {name}")
            else:
                log.error("cannot write %s (%s)", self.dir / name, exc)
            return
        if self.disk is not None:
            self.disk.wrote()
        self._written[name] = data

    def _load_json(self, name: str) -> dict[str, Any] | None:
        raw = self._read(name)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("%s is corrupt (%s); starting without it", self.dir / name, exc)
            return None
        if not isinstance(data, dict):
            log.warning("%s has an unexpected shape; starting without it", self.dir / name)
            return None
        return data

    # --- is there anything to pick up? --------------------------------------------------------
    def has_state(self) -> bool:
        """Whether an earlier run left something the local scheduler must pick up at start:
        applied schedules (fired offline from ``catalog.json``), last ticks (``catchup``),
        claims (results still to come) or last successes (``per_pc`` dedup). Plain JSON
        reads, without the scheduling core. A file that cannot be read as a JSON object
        counts as something: the loaders below report it."""
        wanted = {
            CATALOG_FILE: ("schedules",),
            STATE_FILE: ("last_ticks", "claims"),
            SUCCESSES_FILE: ("successes",),
        }
        for name, keys in wanted.items():
            try:
                data = json.loads((self.dir / name).read_bytes())
            except FileNotFoundError:
                continue
            except (OSError, ValueError, UnicodeDecodeError):
                return True
            if not isinstance(data, dict) or any(data.get(key) for key in keys):
                return True
        return False

    # --- successes ----------------------------------------------------------------------------
    def load_successes(self) -> dict[str, datetime]:
        from kanade.core.scheduling import decode_successes

        raw = self._read(SUCCESSES_FILE)
        if raw is None:
            return {}
        successes, warnings = decode_successes(raw)
        for warning in warnings:
            log.warning("%s: %s", self.dir / SUCCESSES_FILE, warning)
        return successes

    def save_successes(self, successes: Mapping[str, datetime]) -> None:
        from kanade.core.scheduling import encode_successes

        self._write(SUCCESSES_FILE, encode_successes(successes).encode())

    # --- last ticks and claims ----------------------------------------------------------------
    def load_state(self) -> tuple[dict[str, datetime], list[Claim]]:
        from kanade.core.scheduling import Claim

        data = self._load_json(STATE_FILE)
        if data is None:
            return {}, []
        ticks: dict[str, datetime] = {}
        raw_ticks = data.get("last_ticks")
        if isinstance(raw_ticks, dict):
            for key, value in raw_ticks.items():
                moment = _instant(value)
                if moment is not None:
                    ticks[str(key)] = moment
        claims: list[Claim] = []
        raw_claims = data.get("claims")
        if isinstance(raw_claims, list):
            for item in raw_claims:
                if not isinstance(item, dict):
                    continue
                claimed_at = _instant(item.get("claimed_at"))
                until = _instant(item.get("until"))
                sid, owner = item.get("schedule_id"), item.get("owner")
                if claimed_at and until and isinstance(sid, str) and isinstance(owner, str):
                    claims.append(Claim(sid, owner, claimed_at, until))
        return ticks, claims

    def save_state(self, last_ticks: Mapping[str, datetime], claims: Iterable[Claim]) -> None:
        body = {
            "version": FORMAT_VERSION,
            "last_ticks": {k: format_instant(v) for k, v in sorted(last_ticks.items())},
            "claims": [
                {
                    "schedule_id": c.schedule_id,
                    "owner": c.owner,
                    "claimed_at": format_instant(c.claimed_at),
                    "until": format_instant(c.until),
                }
                for c in claims
            ],
        }
        self._write(STATE_FILE, json.dumps(body, indent=1, sort_keys=True).encode())

    # --- decision totals ----------------------------------------------------------------------
    def load_decisions(self) -> tuple[str | None, dict[str, dict[str, int]]]:
        """``(epoch, {schedule_id: {fired, skipped, missed}})``: what every report carries.
        No file (or a corrupt one): no epoch, and the caller starts a new one — the backend
        adds the totals of each epoch, so a fresh count never hides an old one."""
        data = self._load_json(DECISIONS_FILE)
        if data is None or not isinstance(data.get("epoch"), str):
            return None, {}
        totals: dict[str, dict[str, int]] = {}
        raw = data.get("totals")
        if isinstance(raw, dict):
            for sid, counts in raw.items():
                if isinstance(counts, dict):
                    totals[str(sid)] = {
                        k: v if isinstance(v := counts.get(k), int) and v >= 0 else 0
                        for k in RESULTS
                    }
        return str(data["epoch"])[:64], totals

    def save_decisions(self, epoch: str, totals: Mapping[str, Mapping[str, int]]) -> None:
        body = {"version": FORMAT_VERSION, "epoch": epoch, "totals": totals}
        self._write(DECISIONS_FILE, json.dumps(body, indent=1, sort_keys=True).encode())

    # --- catalog cache ------------------------------------------------------------------------
    def load_catalog(self) -> CachedCatalog | None:
        data = self._load_json(CATALOG_FILE)
        if data is None:
            return None

        def mapping(key: str) -> dict[str, Any]:
            value = data.get(key)
            return value if isinstance(value, dict) else {}

        groups = data.get("groups")
        revoked = data.get("revoked")
        return CachedCatalog(
            schedules=mapping("schedules"),
            jobs=mapping("jobs"),
            digests={k: v for k, v in mapping("digests").items() if isinstance(v, str)},
            freeze=data.get("freeze"),
            groups=[g for g in groups if isinstance(g, str)] if isinstance(groups, list) else [],
            revoked=[r for r in revoked if isinstance(r, str)] if isinstance(revoked, list) else [],
        )

    def save_catalog(self, catalog: CachedCatalog) -> None:
        text = json.dumps(catalog.to_json(), indent=1, sort_keys=True)
        self._write(CATALOG_FILE, text.encode())
