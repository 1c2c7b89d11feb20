"""One execution as ``GET /api/executions/{id}`` shows it: the exec row and one entry per
expected pc — its result row, ``pending`` while it has not reported, or ``pruned`` once
retention removed the row."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from kanade.backend.errors import NotFound
from kanade.backend.store import executions
from kanade.backend.store import results as result_rows
from kanade.backend.store.database import Database


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
