"""Every write to the projection, as batched UPSERTs (one statement, many rows).

Each function takes an open :class:`Connection` inside the caller's
transaction, so a whole projector batch — its upserts and the counter refresh
they cause — commits or rolls back as one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, bindparam, case, false, func, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from kanade.backend.store.tables import agents, executions, projection_state, results
from kanade.core.execstatus import TRANSITIONS, progressed_status

Row = Mapping[str, Any]

# Chunk for IN (...) lists: far under every backend's bound-parameter limit.
_IN_CHUNK = 500


def _insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT that supports ``ON CONFLICT`` (SQLite and PostgreSQL share it)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i : i + _IN_CHUNK]


# --- results -------------------------------------------------------------------------


def insert_started(conn: Connection, rows: Sequence[Row]) -> None:
    """EventStarted rows: create ``in_flight`` rows; a row that already exists (started,
    finished or reaped) is left alone — an EventStarted after its result changes nothing."""
    if rows:
        stmt = _insert(conn, results).on_conflict_do_nothing(index_elements=["result_id"])
        conn.execute(stmt, list(rows))


_RESULT_UPDATE_COLUMNS = (
    "state", "exit_code", "skipped", "stdout", "stderr", "stdout_bytes", "stderr_bytes",
    "stdout_ref", "stderr_ref", "started_at", "finished_at", "attempts", "note",
    "schedule_id", "nominal_time", "recorded_at",
)  # fmt: skip


def upsert_finished(conn: Connection, rows: Sequence[Row]) -> None:
    """Result rows: insert as ``finished``, or complete an ``in_flight``/``reaped`` row.

    A row that is already finished is kept as it is: the first finished result of a
    ``result_id`` wins, so a redelivery (or the agent re-sending from its outbox) is a
    no-op rather than a rewrite of ``recorded_at``.
    """
    if not rows:
        return
    stmt = _insert(conn, results)
    stmt = stmt.on_conflict_do_update(
        index_elements=["result_id"],
        set_={c: stmt.excluded[c] for c in _RESULT_UPDATE_COLUMNS},
        where=results.c.state != "finished",
    )
    conn.execute(stmt, list(rows))


# --- executions ----------------------------------------------------------------------

_EXEC_RECORD_COLUMNS = (
    "kind", "job_id", "version", "target", "expected_pcs", "expected_count",
    "initiated_by", "schedule_id", "nominal_time", "created_at", "request_id",
    "inventory_hint", "check_hint",
)  # fmt: skip


def upsert_executions(conn: Connection, rows: Sequence[Row], now: datetime) -> None:
    """Create or refresh execution rows from their creation records.

    The one implementation behind both the API (read-your-own-write) and the
    ``projector-execs`` consumer (rebuild from the stream). Status and counters are
    not taken from the record — they are the projector's, derived from the results —
    so re-projecting an old record never resets a running exec to pending.
    """
    if not rows:
        return
    full = [
        {
            **row,
            "updated_at": now,
            "started_count": 0,
            "finished_count": 0,
            "failed_count": 0,
            "skipped_count": 0,
        }
        for row in rows
    ]
    stmt = _insert(conn, executions)
    stmt = stmt.on_conflict_do_update(
        index_elements=["exec_id"],
        set_={c: stmt.excluded[c] for c in _EXEC_RECORD_COLUMNS},
    )
    conn.execute(stmt, full)
    # Results may have been projected before the record (replay order, or a slow API
    # write): count them now.
    refresh_exec_counters(conn, [str(r["exec_id"]) for r in rows], now)


def refresh_exec_counters(conn: Connection, exec_ids: Iterable[str], now: datetime) -> None:
    """Recompute counters of ``exec_ids`` from their results rows and advance their status.

    Counting (instead of incrementing) is what makes redelivery harmless. ``finished``
    includes reaped rows — a reaped pc will not report any more, so it must not hold the
    exec open; it also counts as failed. Skipped results are finished, not failed.
    """
    ids = sorted(set(exec_ids))
    if not ids:
        return
    done = results.c.state.in_(("finished", "reaped"))
    failed = or_(
        results.c.state == "reaped",
        and_(
            results.c.state == "finished",
            results.c.skipped == false(),
            results.c.exit_code != 0,
        ),
    )
    skipped = and_(results.c.state == "finished", results.c.skipped == true())
    counts: dict[str, tuple[int, int, int, int]] = {}
    current: dict[str, tuple[str, int]] = {}
    for chunk in _chunks(ids):
        q = (
            select(
                results.c.exec_id,
                func.count(),
                func.sum(case((done, 1), else_=0)),
                func.sum(case((failed, 1), else_=0)),
                func.sum(case((skipped, 1), else_=0)),
            )
            .where(results.c.exec_id.in_(chunk))
            .group_by(results.c.exec_id)
        )
        for exec_id, n_started, n_finished, n_failed, n_skipped in conn.execute(q):
            counts[exec_id] = (int(n_started), int(n_finished), int(n_failed), int(n_skipped))
        q2 = select(executions.c.exec_id, executions.c.status, executions.c.expected_count).where(
            executions.c.exec_id.in_(chunk)
        )
        for exec_id, status, expected in conn.execute(q2):
            current[exec_id] = (status, expected)

    updates = []
    for exec_id, (status, expected) in current.items():
        n_started, n_finished, n_failed, n_skipped = counts.get(exec_id, (0, 0, 0, 0))
        updates.append(
            {
                "b_exec_id": exec_id,
                "b_status": progressed_status(
                    status, started=n_started, finished=n_finished, expected=expected
                ),
                "b_started": n_started,
                "b_finished": n_finished,
                "b_failed": n_failed,
                "b_skipped": n_skipped,
                "b_now": now,
            }
        )
    if updates:
        stmt = (
            update(executions)
            .where(executions.c.exec_id == bindparam("b_exec_id"))
            .values(
                status=bindparam("b_status"),
                started_count=bindparam("b_started"),
                finished_count=bindparam("b_finished"),
                failed_count=bindparam("b_failed"),
                skipped_count=bindparam("b_skipped"),
                updated_at=bindparam("b_now"),
            )
        )
        conn.execute(stmt, updates)


# --- agents --------------------------------------------------------------------------

_AGENT_UPDATE_COLUMNS = (
    "hostname", "agent_version", "os_family", "os_version", "boot_time", "cpu_percent",
    "rss_bytes", "groups", "schedule_set_version", "last_command_at", "queue_length",
    "running", "last_seen",
)  # fmt: skip


def apply_exec_status(conn: Connection, exec_id: str, status: str, now: datetime) -> bool:
    """Move one exec to ``status`` if the transition table allows it; True if it moved.

    The table is the only authority: a record replayed after the exec already went
    further (or a status it may not enter) changes nothing.
    """
    allowed_from = [s for s, nxt in TRANSITIONS.items() if status in nxt]
    if not allowed_from:
        return False
    res = conn.execute(
        update(executions)
        .where(executions.c.exec_id == exec_id, executions.c.status.in_(allowed_from))
        .values(status=status, updated_at=now)
    )
    return bool(res.rowcount)


def upsert_agents(conn: Connection, rows: Sequence[Row]) -> None:
    """Latest heartbeat per agent; ``first_seen`` is kept from the first insert."""
    if not rows:
        return
    stmt = _insert(conn, agents)
    stmt = stmt.on_conflict_do_update(
        index_elements=["pc_id"],
        set_={c: stmt.excluded[c] for c in _AGENT_UPDATE_COLUMNS},
    )
    conn.execute(stmt, list(rows))


# --- projection state ----------------------------------------------------------------


def get_state(conn: Connection, key: str) -> str | None:
    value = conn.execute(
        select(projection_state.c.value).where(projection_state.c.key == key)
    ).scalar_one_or_none()
    return None if value is None else str(value)


def set_state_if_absent(conn: Connection, key: str, value: str, now: datetime) -> bool:
    """Store ``key`` unless present; True when this call created it."""
    stmt = _insert(conn, projection_state).on_conflict_do_nothing(index_elements=["key"])
    return conn.execute(stmt, {"key": key, "value": value, "updated_at": now}).rowcount == 1
