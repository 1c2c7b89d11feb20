"""Inventory facts and check statuses, derived from finished results (SPEC §2.1, §4.2).

The exec row carries the job's hints (``inventory_hint`` / ``check_hint``); a finished
result of such an exec is turned into:

* ``inventory_history`` — every accepted report, keyed by ``result_id`` (insert-once);
* ``inventory`` — the newest report per (pc, job);
* ``checks`` — the newest status per (pc, check name).

"Newest" is ordered by the agent's ``finished_at`` (when the facts were true on that
machine), ties broken by ``result_id``, and only a strictly newer report replaces the
stored one. So the outcome does not depend on arrival order, and redelivery or a
replay after a wipe reproduces the same rows. Both entry points are needed for that:
results usually arrive after their exec record, but on a replay the two streams are
projected independently and either may come first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, and_, or_, select
from sqlalchemy.engine import Connection

from kanade.backend.store.tables import checks, executions, inventory, inventory_history, results
from kanade.backend.store.writes import _insert
from kanade.core.facts import check_outcome, inventory_facts

Row = Mapping[str, Any]
Hints = dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None]]

_CHUNK = 500


def _hints(conn: Connection, exec_ids: Iterable[str]) -> Hints:
    """``exec_id → (inventory_hint, check_hint)`` for the execs that have any hint."""
    ids = sorted(set(exec_ids))
    out: Hints = {}
    for i in range(0, len(ids), _CHUNK):
        q = select(
            executions.c.exec_id, executions.c.inventory_hint, executions.c.check_hint
        ).where(
            executions.c.exec_id.in_(ids[i : i + _CHUNK]),
            or_(executions.c.inventory_hint.is_not(None), executions.c.check_hint.is_not(None)),
        )
        for exec_id, inv, chk in conn.execute(q):
            if inv is not None or chk is not None:
                out[exec_id] = (inv, chk)
    return out


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


def _upsert_if_newer(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    keys = [c.name for c in table.primary_key.columns]
    stmt = _insert(conn, table)
    newer = or_(
        table.c.observed_at < stmt.excluded.observed_at,
        and_(
            table.c.observed_at == stmt.excluded.observed_at,
            table.c.result_id < stmt.excluded.result_id,
        ),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=keys,
        set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys},
        where=newer,
    )
    conn.execute(stmt, rows)


def project_facts(conn: Connection, result_rows: Sequence[Row]) -> None:
    """Derive facts/check statuses from finished result rows (a projector batch)."""
    finished = [r for r in result_rows if r.get("state") == "finished"]
    if not finished:
        return
    hints = _hints(conn, (str(r["exec_id"]) for r in finished))
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
        stmt = _insert(conn, inventory_history).on_conflict_do_nothing(index_elements=["result_id"])
        conn.execute(stmt, history)
        _upsert_if_newer(conn, inventory, _newest(history, ("pc_id", "job_id")))
    _upsert_if_newer(conn, checks, _newest(statuses, ("pc_id", "name")))


def project_facts_for_execs(conn: Connection, exec_rows: Sequence[Row]) -> None:
    """An exec record with hints arrived: derive facts from results already projected
    for it (a replay may project results before their exec record)."""
    ids = [str(r["exec_id"]) for r in exec_rows if r.get("inventory_hint") or r.get("check_hint")]
    for i in range(0, len(ids), _CHUNK):
        q = select(results).where(
            results.c.exec_id.in_(ids[i : i + _CHUNK]), results.c.state == "finished"
        )
        rows = [dict(m) for m in conn.execute(q).mappings()]
        project_facts(conn, rows)
