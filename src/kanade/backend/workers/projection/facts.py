"""Inventory facts and check statuses, derived from finished results (SPEC §2.1, §4.2).

Why "newest" is by the agent's ``finished_at`` and both entry points are needed:
docs/backend.md, "Inventory facts and check statuses".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection

from kanade.backend.store import executions, inventory, results
from kanade.core.facts import check_outcome, inventory_facts

Row = Mapping[str, Any]


def _order_key(row: Row) -> tuple[Any, str]:
    return (row["observed_at"], str(row["result_id"]))


def _newest(rows: list[dict[str, Any]], key: tuple[str, str]) -> list[dict[str, Any]]:
    """One row per key, the newest: a batch may hold several reports of one pc."""
    best: dict[tuple[Any, Any], dict[str, Any]] = {}
    for row in rows:
        k = (row[key[0]], row[key[1]])
        if k not in best or _order_key(row) > _order_key(best[k]):
            best[k] = row
    return list(best.values())


def project_facts(conn: Connection, result_rows: Sequence[Row]) -> None:
    """Derive facts/check statuses from finished result rows (a projector batch)."""
    finished = [r for r in result_rows if r.get("state") == "finished"]
    if not finished:
        return
    hints = executions.fact_hints(conn, (str(r["exec_id"]) for r in finished))
    if not hints:
        return
    history: list[dict[str, Any]] = []
    statuses: list[dict[str, Any]] = []
    for r in finished:
        inv_hint, chk_hint = hints.get(str(r["exec_id"]), (None, None))
        base = {
            "pc_id": r["pc_id"],
            "job_id": r["job_id"],
            "version": r["version"],
            "result_id": r["result_id"],
            "exec_id": r["exec_id"],
            "observed_at": r["finished_at"],
            "recorded_at": r["recorded_at"],
        }
        if inv_hint is not None:
            facts = inventory_facts(
                exit_code=r["exit_code"], skipped=bool(r["skipped"]), stdout=r["stdout"] or ""
            )
            if facts is not None:
                history.append({**base, "facts": facts})
        if chk_hint is not None and chk_hint.get("name"):
            outcome = check_outcome(
                exit_code=r["exit_code"],
                skipped=bool(r["skipped"]),
                stdout=r["stdout"] or "",
                status_field=str(chk_hint.get("status_field") or "status"),
                detail_field=str(chk_hint.get("detail_field") or "detail"),
            )
            if outcome is not None:
                statuses.append(
                    {
                        **base,
                        "name": str(chk_hint["name"]),
                        "status": outcome.status,
                        "detail": outcome.detail,
                    }
                )
    if history:
        inventory.insert_history(conn, history)
        inventory.upsert_current_facts(conn, _newest(history, ("pc_id", "job_id")))
    inventory.upsert_check_statuses(conn, _newest(statuses, ("pc_id", "name")))


def project_facts_for_execs(conn: Connection, exec_rows: Sequence[Row]) -> None:
    """An exec record with hints arrived: derive facts from results already projected
    for it (a replay may project results before their exec record)."""
    ids = [str(r["exec_id"]) for r in exec_rows if r.get("inventory_hint") or r.get("check_hint")]
    if ids:
        project_facts(conn, results.finished_of_execs(conn, ids))
