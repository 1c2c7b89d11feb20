"""The ``scripts`` table: inline script text by sha256, written with the exec rows that
name it (``executions.script_sha256``); one row per distinct script, however often it runs,
and deleted by retention with the last exec row that names it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from kanade.backend.store.tables import executions, scripts
from kanade.backend.store.upsert import chunks, insert
from kanade.core.scripttext import bounded_text

SHA256_LEN = 64


def script_columns(script: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``executions`` columns of an exec record's ``script`` part (bounded here too:
    the record may come from another writer)."""
    if not script:
        return {"script_sha256": None, "script_shell": None, "script_object": None}
    obj = script.get("object")
    return {
        "script_sha256": str(script.get("sha256") or "")[:SHA256_LEN] or None,
        "script_shell": str(script.get("shell") or "")[:16] or None,
        "script_object": None if obj is None else str(obj)[:300],
    }


def store_scripts(conn: Connection, records: Iterable[Mapping[str, Any]], now: datetime) -> None:
    """Keep the text of every inline script among exec records' rows (``script`` part),
    once per sha256."""
    rows: dict[str, dict[str, Any]] = {}
    for record in records:
        script = record.get("script")
        if not script or script.get("text") is None or not script.get("sha256"):
            continue
        sha = str(script["sha256"])[:SHA256_LEN]
        text, cut = bounded_text(str(script["text"]))
        size = script.get("size")
        rows[sha] = {
            "sha256": sha,
            "text": text,
            "size": int(size) if isinstance(size, int) else len(text.encode()),
            "truncated": bool(script.get("truncated")) or cut,
            "first_seen": now,
        }
    if rows:
        stmt = insert(conn, scripts).on_conflict_do_nothing(index_elements=["sha256"])
        conn.execute(stmt, [rows[k] for k in sorted(rows)])


def exec_script(conn: Connection, exec_id: str) -> dict[str, Any] | None:
    """The exec's script columns and, for an inline script, its stored text (None: no
    such exec). ``text`` is None for a script object or a script never recorded."""
    q = (
        select(
            executions.c.exec_id,
            executions.c.kind,
            executions.c.job_id,
            executions.c.version,
            executions.c.script_sha256,
            executions.c.script_shell,
            executions.c.script_object,
            scripts.c.text,
            scripts.c.size,
            scripts.c.truncated,
        )
        .select_from(executions.outerjoin(scripts, scripts.c.sha256 == executions.c.script_sha256))
        .where(executions.c.exec_id == exec_id)
    )
    row = conn.execute(q).mappings().first()
    return None if row is None else dict(row)


def scripts_of(conn: Connection, exec_ids: Sequence[str]) -> set[str]:
    """The sha256 of every script the execs ``exec_ids`` name."""
    found: set[str] = set()
    for chunk in chunks(list(exec_ids)):
        q = select(executions.c.script_sha256).where(
            executions.c.exec_id.in_(chunk), executions.c.script_sha256.is_not(None)
        )
        found.update(str(sha) for (sha,) in conn.execute(q.distinct()))
    return found


def delete_unreferenced(conn: Connection, sha256s: Iterable[str]) -> int:
    """Delete the texts among ``sha256s`` that no exec row names any more (retention, after
    it deleted exec rows; ``ix_executions_script_sha256`` answers each "names it?")."""
    still_named = (
        select(executions.c.exec_id).where(executions.c.script_sha256 == scripts.c.sha256).exists()
    )
    deleted = 0
    for chunk in chunks(sorted(sha256s)):
        q = delete(scripts).where(scripts.c.sha256.in_(chunk), ~still_named)
        deleted += int(conn.execute(q).rowcount or 0)
    return deleted
