"""``notify-detector``: finds facts worth telling in the database and fans them out.

Each pass reads every source past its cursor (failed execs, skipped and missed fires of
both schedulers, agents silent past a webhook's ``offline_after``, halted rollouts),
records the events (each fact once), and turns new events — also those the heartbeat sink
recorded (a quarantined agent version) — into deliveries for the webhooks that want them.
A cursor restarts from ``max(floor, now - lookback)``: after a restart or a change of
leader the recent past is read again (recorded events are not recorded twice) and a fact
from before the database's notification floor is never told — a rebuilt database does
not re-announce history. Why: docs/notifications.md, "Detection".
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy.engine import Connection

from kanade.backend.store import deliveries, notify_events, projection_state
from kanade.backend.store.database import Database
from kanade.backend.store.notify_events import Cursor
from kanade.backend.store.webhooks import subscriptions
from kanade.core.instants import Clock, format_instant, parse_instant, system_clock
from kanade.core.notify import events as ev
from kanade.core.notify.events import Event, EventKind
from kanade.worker import Worker

log = structlog.get_logger(__name__)

FLOOR_KEY: Final = "notify_floor"
"""``projection_state`` key: no fact before this instant is told. Set when a database
first runs the detector — for a wiped one, after its rebuild caught up."""
OVERLAP: Final = timedelta(minutes=5)
"""How far back each pass reads again: rows committed late (a projection lagging behind
its stream's time) are still seen."""
BATCH: Final = 500
"""Rows per source per pass at most."""
FAILED_PCS_SHOWN: Final = 20
PRUNE_EVERY: Final = timedelta(minutes=10)
PRUNE_BATCH: Final = 1000


def notification_floor(conn: Connection, now: datetime) -> datetime:
    projection_state.set_state_if_absent(conn, FLOOR_KEY, format_instant(now), now)
    value = projection_state.get_state(conn, FLOOR_KEY)
    return now if value is None else parse_instant(value)


@dataclass
class _Source:
    name: str
    read: Callable[[Connection, Cursor, datetime, int], list[dict[str, Any]]]
    position: Callable[[dict[str, Any]], Cursor]
    build: Callable[[Connection, list[dict[str, Any]]], list[Event]]
    kinds: frozenset[str] = frozenset()
    """The event kinds it yields: it is read only while an enabled webhook wants one."""
    shift: timedelta = timedelta(0)
    """A cursor is kept in event time; the rows are read at ``time - shift`` (offline)."""


@dataclass(frozen=True)
class _Scanned:
    events: list[Event]
    cursor: Cursor
    full: bool


class NotifyDetector(Worker):
    name = "notify-detector"

    def __init__(
        self,
        db: Database,
        *,
        leading: Callable[[], bool],
        interval_s: float = 5.0,
        lookback: timedelta = timedelta(hours=1),
        keep: timedelta = timedelta(days=7),
        clock: Clock = system_clock,
        fanned_out: Callable[[], None] | None = None,
        batch: int = BATCH,
    ) -> None:
        super().__init__(interval=interval_s)
        self._db = db
        self._leading = leading
        self._lookback = lookback
        self._keep = keep
        self._clock = clock
        self._fanned_out = fanned_out
        self._batch = batch
        self._floor: datetime | None = None
        self._cursors: dict[str, Cursor] = {}
        self._in_term = False
        self._pruned_at: datetime | None = None

    async def step(self) -> bool | None:
        if not self._leading():
            # A later term starts from the lookback again (another replica may have moved on).
            self._cursors.clear()
            self._in_term = False
            return None
        now = self._clock()
        if self._floor is None:
            self._floor = await self._db.write(lambda c: notification_floor(c, now))
        # A new term reads the lookback again; a source someone subscribed to only now starts
        # at the overlap (a new subscription is not told the last hour).
        start = max(self._floor, now - self._lookback)
        if self._in_term:
            start = max(start, now - OVERLAP)
        self._in_term = True
        kinds, thresholds = await self._db.read(subscriptions)
        # Only what an enabled webhook wants is read: with no webhook, nothing is scanned.
        sources = [s for s in self._sources(thresholds) if s.kinds & kinds]
        more = False
        found: list[Event] = []
        for source in sources:
            cursor = self._cursors.get(source.name) or Cursor(start)
            scanned = await self._db.read(
                lambda c, s=source, k=cursor: self._scan(c, s, k, now)  # type: ignore[misc]
            )
            found += scanned.events
            self._cursors[source.name] = scanned.cursor
            more = more or scanned.full
        wanted = {s.name for s in sources}
        for name in [n for n in self._cursors if n not in wanted]:
            del self._cursors[name]

        def record(conn: Connection) -> tuple[int, int]:
            new = notify_events.record_events(conn, found, now)
            return new, notify_events.fan_out(conn, now, self._batch)

        new, fanned = await self._db.write(record)
        if new or fanned:
            log.info("notification events", new=new, fanned_out=fanned)
        if fanned and self._fanned_out is not None:
            self._fanned_out()
        await self._prune(now)
        return more or fanned >= self._batch

    def _scan(self, conn: Connection, source: _Source, cursor: Cursor, now: datetime) -> _Scanned:
        """One source past ``cursor``: its events and where the next pass resumes — right
        after the last row when the batch was full, else ``OVERLAP`` back from now."""
        read_from = Cursor(cursor.at - source.shift, cursor.key)
        rows = source.read(conn, read_from, now - source.shift, self._batch)
        events = source.build(conn, rows) if rows else []
        if len(rows) >= self._batch:
            last = source.position(rows[-1])
            return _Scanned(events, Cursor(last.at + source.shift, last.key), full=True)
        floor = max(self._floor or now, now - self._lookback)
        return _Scanned(events, Cursor(max(floor, now - OVERLAP)), full=False)

    def _sources(self, thresholds: Sequence[float]) -> list[_Source]:
        fires = frozenset({EventKind.SCHEDULE_SKIPPED.value, EventKind.SCHEDULE_MISSED.value})
        sources = [
            _Source("execs", notify_events.failed_execs, _at("updated_at", "exec_id"),
                    _failed_execs, frozenset({EventKind.EXEC_FAILED.value})),
            _Source("central", notify_events.central_decisions, _at("decided_at", "id"),
                    _central_decisions, fires),
            _Source("agents", notify_events.agent_decisions, _at("recorded_at", "decision_id"),
                    _agent_decisions, fires),
            _Source("rollouts", notify_events.halted_rollouts, _at("updated_at", "rollout_id"),
                    _halted_rollouts, frozenset({EventKind.ROLLOUT_HALTED.value})),
        ]  # fmt: skip
        for t in thresholds:
            threshold = timedelta(seconds=t)
            sources.append(
                _Source(
                    f"offline:{t:g}",
                    notify_events.silent_agents,
                    _at("last_seen", "pc_id"),
                    functools.partial(_offline, threshold=threshold),
                    frozenset({EventKind.AGENT_OFFLINE.value}),
                    shift=threshold,
                )
            )
        return sources

    async def _prune(self, now: datetime) -> None:
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        before = now - self._keep

        def prune(conn: Connection) -> tuple[int, int]:
            return (
                notify_events.prune_events(conn, before, PRUNE_BATCH),
                deliveries.prune(conn, before, PRUNE_BATCH),
            )

        events, sent = await self._db.write(prune)
        if events or sent:
            log.info("notifications pruned", events=events, deliveries=sent)


def _at(time_col: str, key_col: str) -> Callable[[dict[str, Any]], Cursor]:
    return lambda row: Cursor(row[time_col], str(row[key_col]))


def _failed_execs(conn: Connection, rows: list[dict[str, Any]]) -> list[Event]:
    pcs = notify_events.failed_pcs(conn, [str(r["exec_id"]) for r in rows], FAILED_PCS_SHOWN)
    return [
        ev.exec_failed(
            exec_id=str(r["exec_id"]),
            job_id=str(r["job_id"]),
            version=str(r["version"]),
            kind=str(r["kind"]),
            failed=int(r["failed_count"]),
            expected=int(r["expected_count"]),
            finished=int(r["finished_count"]),
            no_result=int(r["no_result_count"] or 0),
            initiated_by=str(r["initiated_by"]),
            schedule_id=r["schedule_id"],
            failed_pcs=pcs.get(str(r["exec_id"]), []),
            at=r["updated_at"],
        )
        for r in rows
    ]


def _central_decisions(_conn: Connection, rows: list[dict[str, Any]]) -> list[Event]:
    return [
        ev.schedule_decision(
            result=str(r["result"]),
            schedule_id=str(r["schedule_id"]),
            occurrence_id=str(r["occurrence_id"]),
            nominal_time=r["nominal_time"],
            reason=r["reason"],
            detail=r["detail"],
            runs_on="backend",
            at=r["decided_at"],
        )
        for r in rows
    ]


def _agent_decisions(_conn: Connection, rows: list[dict[str, Any]]) -> list[Event]:
    """One event per occurrence and result, whichever pcs reported it in this pass."""
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        key = (str(r["schedule_id"]), str(r["occurrence_id"]), str(r["result"]))
        grouped.setdefault(key, []).append(r)
    out: list[Event] = []
    for (schedule_id, occurrence_id, result), group in grouped.items():
        first = group[0]
        pcs = sorted({str(r["pc_id"]) for r in group})
        out.append(
            ev.schedule_decision(
                result=result,
                schedule_id=schedule_id,
                occurrence_id=occurrence_id,
                nominal_time=first["nominal_time"],
                reason=first["reason"],
                detail=first["detail"],
                runs_on="agent",
                pcs=pcs,
                pc_count=len(pcs),
                at=max(r["recorded_at"] for r in group),
            )
        )
    return out


def _halted_rollouts(_conn: Connection, rows: list[dict[str, Any]]) -> list[Event]:
    return [
        ev.rollout_halted(
            rollout_id=str(r["rollout_id"]),
            exec_id=str(r["exec_id"]),
            job_id=str(r["job_id"]),
            version=str(r["version"]),
            wave=max(0, int(r["current_wave"]) - 1),
            wave_count=int(r["wave_count"]),
            reason=r["reason"],
            failure_rate=r["failure_rate"],
            at=r["updated_at"],
        )
        for r in rows
    ]


def _offline(
    _conn: Connection, rows: list[dict[str, Any]], *, threshold: timedelta
) -> list[Event]:
    return [
        ev.agent_offline(
            pc_id=str(r["pc_id"]),
            hostname=str(r["hostname"] or ""),
            last_seen=r["last_seen"],
            stopped=r["stopped_at"] is not None,
            threshold=threshold,
        )
        for r in rows
    ]
