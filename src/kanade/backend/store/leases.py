"""Leases in the database: which backend replica runs a worker that must run once (the
reaper, the rollout runner, the approval sweeper, retention, notifications; SPEC §9).

One ``projection_state`` row per lease (``lease.<name>``) holding the holder (a replica:
its host and HTTP port), the holder's incarnation (one per process start), the term and
when the lease expires. A replica that restarts takes its own lease back at once, in a new
term — its previous incarnation, should it still be running somewhere, is fenced out.

Those workers decide from rows and write rows, so their lease lives where their writes
go: :func:`check` runs inside every write transaction of the holder
(``Database.fenced``), under the writer lock every write takes, so a replica that lost
the lease — paused, partitioned, its renewals late — commits nothing once another took
over, whatever the clocks say. Clocks only decide *when* a silent holder may be replaced
(its ``expires_at`` passed on the contender's clock).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from kanade.backend.store.projection_state import get_state
from kanade.backend.store.tables import projection_state
from kanade.backend.store.upsert import insert
from kanade.core.instants import format_instant, parse_instant

PREFIX = "lease."


class LeaseLost(RuntimeError):
    """A fenced write was refused: the lease is another replica's now."""


@dataclass(frozen=True)
class Holding:
    holder: str
    incarnation: str
    term: int
    expires_at: datetime


def _key(name: str) -> str:
    return PREFIX + name


def current(conn: Connection, name: str) -> Holding | None:
    raw = get_state(conn, _key(name))
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
        return Holding(str(doc["holder"]), str(doc.get("incarnation", "")), int(doc["term"]),
                       parse_instant(doc["expires_at"]))  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return None  # unreadable: as if nobody held it (the next holder rewrites it)


def _write(conn: Connection, name: str, holding: Holding, now: datetime) -> None:
    value = json.dumps({"holder": holding.holder, "incarnation": holding.incarnation,
                        "term": holding.term,
                        "expires_at": format_instant(holding.expires_at)})  # fmt: skip
    stmt = insert(conn, projection_state)
    stmt = stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
    )
    conn.execute(stmt, {"key": _key(name), "value": value, "updated_at": now})


def hold(
    conn: Connection, name: str, holder: str, incarnation: str, now: datetime, ttl: timedelta
) -> int | None:
    """Take or renew the lease for ``ttl`` from ``now``: its term when ``holder`` holds it
    afterwards, None while another holder's lease has not expired. The same holder in
    another incarnation (restarted) takes it at once, in a new term."""
    held = current(conn, name)
    if held is not None and held.holder != holder and held.expires_at > now:
        return None
    renewing = held is not None and (held.holder, held.incarnation) == (holder, incarnation)
    term = held.term if renewing and held is not None else (held.term if held else 0) + 1
    _write(conn, name, Holding(holder, incarnation, term, now + ttl), now)
    return term


def check(conn: Connection, name: str, holder: str, term: int) -> None:
    """Raise :class:`LeaseLost` unless ``holder`` still holds the lease in ``term``."""
    held = current(conn, name)
    if held is None or held.holder != holder or held.term != term:
        raise LeaseLost(f"the {name} lease is no longer {holder}'s (term {term})")


def release(conn: Connection, name: str, holder: str, term: int, now: datetime) -> None:
    """End our term now, so a standby takes over without waiting for the expiry."""
    held = current(conn, name)
    if held is not None and held.holder == holder and held.term == term:
        _write(conn, name, Holding(holder, held.incarnation, term, now), now)
