"""One execution as ``GET /api/executions/{id}`` shows it: the exec row and one entry per
expected pc — its result row, ``pending`` while it has not reported, or ``pruned`` once
retention removed the row — now, or (:func:`execution_progress`) once it moved on."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy.engine import Connection

from kanade.backend.errors import NotFound
from kanade.backend.messaging.live import Payload, hub
from kanade.backend.store import executions
from kanade.backend.store import results as result_rows
from kanade.backend.store.database import Database
from kanade.core.statuses import ExecStatus

MAX_WAIT_S: Final = 30.0
"""The longest a request may wait for progress: below every proxy's idle timeout."""
_ENDED: Final = frozenset({ExecStatus.COMPLETED, ExecStatus.EXPIRED, ExecStatus.CANCELLED,
                           ExecStatus.REJECTED})  # fmt: skip
_CHANGES: Final = frozenset({"results", "execs"})


async def execution_detail(db: Database, exec_id: str, *, results: bool) -> dict[str, Any]:
    """The row alone with ``results=False`` (counters only, cheap to poll)."""

    def load(conn: Connection) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        row = executions.get_execution(conn, exec_id)
        with_results = row is not None and results
        return row, (result_rows.results_of_exec(conn, exec_id) if with_results else [])

    row, rows = await db.read(load)
    if row is None:
        raise NotFound(f"execution {exec_id!r} not found", exec_id=exec_id)
    if not results:
        return row
    reported = {r["pc_id"] for r in rows}
    # Once retention pruned some of its rows, a pc without one reported long ago.
    missing = "pruned" if row.get("results_pruned_at") is not None else "pending"
    pending = [
        {"pc_id": pc, "exec_id": exec_id, "state": missing}
        for pc in row["expected_pcs"]
        if pc not in reported
    ]
    return {**row, "results": sorted([*rows, *pending], key=lambda r: str(r["pc_id"]))}


def done_count(row: Mapping[str, Any]) -> int:
    """The pcs that will not report again: finished, reaped or closed without a result
    (``finished_count`` counts them all, see ``store.executions.refresh_exec_counters``)."""
    return int(row.get("finished_count") or 0)


def _touches(events: list[tuple[str, Payload]], exec_id: str) -> bool:
    for topic, payload in events:
        if topic not in _CHANGES:
            continue
        ids = payload.get("exec_ids", None)
        if ids is None or exec_id in ids:  # no list: "many changed"
            return True
    return False


async def execution_progress(
    db: Database, exec_id: str, *, results: bool, done_above: int, wait_s: float
) -> dict[str, Any]:
    """:func:`execution_detail` once more than ``done_above`` pcs are done, or the exec
    ended, or ``wait_s`` passed — whichever comes first. A client waiting for results
    (``kanade run``) asks once per result instead of polling: polls cost the backend a
    read each, on the machine that is projecting the very results being waited for, and
    a poll interval added half itself to every wait (docs/performance.md, "CLI start-up").

    Woken by the projector's commits (this replica's, and other replicas' through the
    dashboard relay), it re-reads only for a change that names this exec."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + min(max(wait_s, 0.0), MAX_WAIT_S)
    # Subscribed before the first read: a commit between the read and the wait still wakes.
    with hub.subscribe() as changes:
        while True:
            detail = await execution_detail(db, exec_id, results=results)
            if done_count(detail) > done_above or detail.get("status") in _ENDED:
                return detail
            while True:
                remaining = give_up - loop.time()
                if remaining <= 0:
                    return detail
                if await changes.wait(timeout=remaining) and _touches(changes.take(), exec_id):
                    break
