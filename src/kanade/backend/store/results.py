"""The ``results`` table: one row per (exec, pc) — in flight, finished, reaped, or
``no_result`` (an expected pc that never started, closed at the exec's deadline).

Rows are keyed by ``result_id`` and written with UPSERTs, so arrival order and
redelivery never duplicate or lose anything; the first finished result wins, and any
report of a pc replaces its ``no_result`` row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection

from kanade.backend.store.paging import Page, Record, page
from kanade.backend.store.tables import executions, results
from kanade.backend.store.upsert import batch_insert, chunks, first_of_each, insert
from kanade.core.execends import NO_RESULT
from kanade.core.ids import no_result_id
from kanade.core.lifecycle import REAPED_EXIT_CODE, result_expires_at

Row = Mapping[str, Any]

# --- reads -----------------------------------------------------------------------------


def results_of_exec(conn: Connection, exec_id: str) -> list[Record]:
    q = select(results).where(results.c.exec_id == exec_id).order_by(results.c.pc_id)
    return [dict(r) for r in conn.execute(q).mappings()]


RESULT_STATUSES = ("ok", "failed", "skipped", "running", "no_result")
"""How a result reads in the views (the dashboard's ``resultKind``): ``failed`` is a
finished run with a non-zero exit or a reaped one."""


def _status_clause(status: str) -> Any:
    finished_not_skipped = and_(results.c.state == "finished", results.c.skipped.is_(False))
    return {
        "ok": and_(finished_not_skipped, results.c.exit_code == 0),
        "failed": or_(
            results.c.state == "reaped",
            and_(
                finished_not_skipped,
                or_(results.c.exit_code.is_(None), results.c.exit_code != 0),
            ),
        ),
        "skipped": results.c.skipped.is_(True),
        "running": results.c.state == "in_flight",
        "no_result": results.c.state == NO_RESULT,
    }[status]


def list_results(
    conn: Connection,
    *,
    exec_id: str | None,
    pc_id: str | None,
    job_id: str | None,
    limit: int,
    offset: int,
    exit_code: int | None = None,
    state: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    text: str | None = None,
) -> Page:
    """Newest first; ``since``/``until`` bound ``recorded_at`` (half-open), ``text`` is
    found in the pc id or the job id (case-insensitive)."""
    q = select(results)
    if exec_id is not None:
        q = q.where(results.c.exec_id == exec_id)
    if pc_id is not None:
        q = q.where(results.c.pc_id == pc_id)
    if job_id is not None:
        q = q.where(results.c.job_id == job_id)
    if exit_code is not None:
        q = q.where(results.c.exit_code == exit_code)
    if state == "skipped":  # a flag on finished rows, shown as a state in the views
        q = q.where(results.c.skipped.is_(True))
    elif state is not None:
        q = q.where(results.c.state == state)
    if status is not None:
        q = q.where(_status_clause(status))
    if since is not None:
        q = q.where(results.c.recorded_at >= since)
    if until is not None:
        q = q.where(results.c.recorded_at < until)
    if text:
        needle = text.lower()
        q = q.where(
            or_(
                func.lower(results.c.pc_id).contains(needle, autoescape=True),
                func.lower(results.c.job_id).contains(needle, autoescape=True),
            )
        )
    q = q.order_by(results.c.recorded_at.desc(), results.c.result_id.desc())
    return page(conn, q, limit, offset)


def get_result(conn: Connection, result_id: str) -> Record | None:
    row = conn.execute(select(results).where(results.c.result_id == result_id)).mappings()
    first = row.first()
    return None if first is None else dict(first)


def finished_of_execs(conn: Connection, exec_ids: Sequence[str]) -> list[Record]:
    """Every finished row of ``exec_ids``."""
    out: list[Record] = []
    for chunk in chunks(exec_ids):
        q = select(results).where(results.c.exec_id.in_(chunk), results.c.state == "finished")
        out.extend(dict(m) for m in conn.execute(q).mappings())
    return out


def _hour_bucket(conn: Connection) -> Any:
    col = results.c.recorded_at
    if conn.dialect.name == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC)
        return func.substr(cast(col, String), 1, 13)
    return func.to_char(func.timezone("UTC", col), "YYYY-MM-DD HH24")


def count_by_hour(conn: Connection, since: datetime) -> dict[str, dict[str, int]]:
    """``{"YYYY-MM-DD HH": {kind: n}}`` of rows recorded at or after ``since`` (UTC
    hours), kind one of ok / failed / skipped / running."""
    bucket = _hour_bucket(conn).label("hour")
    kind = case(
        (results.c.state == "in_flight", "running"),
        (results.c.skipped.is_(True), "skipped"),
        (and_(results.c.state == "finished", results.c.exit_code == 0), "ok"),
        else_="failed",
    ).label("kind")
    rows = conn.execute(
        select(bucket, kind, func.count())
        .where(results.c.recorded_at >= since)
        .group_by(bucket, kind)
    ).all()
    by_hour: dict[str, dict[str, int]] = {}
    for hour, k, n in rows:
        by_hour.setdefault(str(hour), {})[k] = int(n)
    return by_hour


# --- writes ----------------------------------------------------------------------------


def insert_started(
    conn: Connection, rows: Sequence[Row], *, reports: Iterable[Row] | None = None
) -> None:
    """EventStarted rows: create ``in_flight`` rows; a row that already exists (started,
    finished or reaped) is left alone — an EventStarted after its result changes nothing.
    The pc started after all: its ``no_result`` row goes (that of every row of
    ``reports`` when given: the projector folds some started rows into results)."""
    drop_no_results(conn, rows if reports is None else reports)
    if rows:
        stmt, params = batch_insert(conn, results, first_of_each(rows, "result_id"))
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["result_id"]), params)


RESULT_UPDATE_COLUMNS = (
    "state", "exit_code", "skipped", "stdout", "stderr", "stdout_bytes", "stderr_bytes",
    "stdout_ref", "stderr_ref", "started_at", "finished_at", "attempts", "note",
    "schedule_id", "nominal_time", "recorded_at",
)  # fmt: skip
"""What a result writes over an existing ``in_flight``/``reaped`` row; the rest (its
identity, ``timeout_s``, ``expires_at``) stays the EventStarted's."""


def upsert_finished(
    conn: Connection, rows: Sequence[Row], *, reports: Iterable[Row] | None = None
) -> None:
    """Result rows: insert as ``finished``, or complete an ``in_flight``/``reaped`` row.

    A row that is already finished is kept as it is: the first finished result of a
    ``result_id`` wins, so a redelivery (or the agent re-sending from its outbox) is a
    no-op rather than a rewrite of ``recorded_at``. The ``no_result`` rows of the pcs
    ``rows`` (or ``reports``, when given) report on go first.
    """
    drop_no_results(conn, rows if reports is None else reports)
    if not rows:
        return
    # The first of each id: the later ones would find it finished.
    stmt, params = batch_insert(conn, results, first_of_each(rows, "result_id"))
    stmt = stmt.on_conflict_do_update(
        index_elements=["result_id"],
        set_={c: stmt.excluded[c] for c in RESULT_UPDATE_COLUMNS},
        where=results.c.state != "finished",
    )
    conn.execute(stmt, params)


def drop_no_results(conn: Connection, rows: Iterable[Row]) -> None:
    """Delete the ``no_result`` rows of the (exec, pc) pairs ``rows`` report on: a late
    report is the truth and replaces the closing row.

    Called for every projected batch, so the common case — none of its execs has a
    ``no_result`` row — costs one primary-key read of those execs' counters."""
    pairs = {(str(r["exec_id"]), str(r["pc_id"])) for r in rows}
    closed: set[str] = set()
    for chunk in chunks(sorted({e for e, _ in pairs})):
        q = select(executions.c.exec_id).where(
            executions.c.exec_id.in_(chunk), executions.c.no_result_count > 0
        )
        closed.update(str(e) for (e,) in conn.execute(q))
    ids = sorted(no_result_id(e, p) for e, p in pairs if e in closed)
    for chunk in chunks(ids):
        conn.execute(
            delete(results).where(results.c.result_id.in_(chunk), results.c.state == NO_RESULT)
        )


def reported_pcs(conn: Connection, exec_id: str) -> set[str]:
    """The pcs with any row for ``exec_id`` (in flight, finished, reaped or no_result)."""
    q = select(results.c.pc_id).where(results.c.exec_id == exec_id).distinct()
    return {str(pc) for (pc,) in conn.execute(q)}


def insert_no_results(conn: Connection, rows: Sequence[Row]) -> None:
    """Close expected pcs that never started (:func:`no_result_row`); written once
    (insert-if-absent on the deterministic id)."""
    if rows:
        stmt = insert(conn, results).on_conflict_do_nothing(index_elements=["result_id"])
        conn.execute(stmt, list(rows))


def no_result_row(
    *,
    exec_id: str,
    request_id: str,
    pc_id: str,
    job_id: str,
    version: str,
    at: datetime,
    note: str,
) -> dict[str, Any]:
    """The ``results`` row of an expected pc closed without a result (SPEC §4.3)."""
    return {
        "result_id": no_result_id(exec_id, pc_id),
        "exec_id": exec_id,
        "request_id": request_id,
        "pc_id": pc_id,
        "job_id": job_id,
        "version": version,
        "state": NO_RESULT,
        "exit_code": None,
        "skipped": False,
        "stdout": "",
        "stderr": "",
        "stdout_bytes": 0,
        "stderr_bytes": 0,
        "stdout_ref": None,
        "stderr_ref": None,
        "started_at": None,
        "finished_at": at,
        "attempts": 0,
        "note": note,
        "schedule_id": None,
        "nominal_time": None,
        "recorded_at": at,
        "timeout_s": None,
        "expires_at": None,
    }


# --- reaping ---------------------------------------------------------------------------


def backfill_expiry(conn: Connection, limit: int) -> None:
    """Rows written before expires_at existed (revision 0002) get it computed once."""
    q = (
        select(results.c.result_id, results.c.recorded_at, results.c.timeout_s)
        .where(results.c.state == "in_flight", results.c.expires_at.is_(None))
        .limit(limit)
    )
    rows = [
        {"b_id": rid, "b_exp": result_expires_at(rec, timeout)}
        for rid, rec, timeout in conn.execute(q)
    ]
    if rows:
        conn.execute(
            update(results)
            .where(results.c.result_id == bindparam("b_id"))
            .values(expires_at=bindparam("b_exp")),
            rows,
        )


def due_in_flight(
    conn: Connection, now: datetime, limit: int
) -> list[tuple[str, str, datetime, float | None]]:
    """``(result_id, exec_id, expires_at, timeout_s)`` of up to ``limit`` in-flight rows
    whose ``expires_at`` has come (inclusive), earliest first."""
    q = (
        select(results.c.result_id, results.c.exec_id, results.c.expires_at, results.c.timeout_s)
        .where(results.c.state == "in_flight", results.c.expires_at <= now)
        .order_by(results.c.expires_at)
        .limit(limit)
    )
    return [(str(r), str(e), x, t) for r, e, x, t in conn.execute(q)]


def mark_reaped(conn: Connection, notes: Iterable[tuple[str, str]]) -> None:
    """``(result_id, note)``: those rows become ``reaped`` (exit -1) if still in flight."""
    params = [{"b_id": rid, "b_note": note} for rid, note in notes]
    if params:
        conn.execute(
            update(results)
            # Guarded by state: only an in_flight row is reaped, never a finished one.
            .where(results.c.result_id == bindparam("b_id"), results.c.state == "in_flight")
            .values(state="reaped", exit_code=REAPED_EXIT_CODE, note=bindparam("b_note")),
            params,
        )
