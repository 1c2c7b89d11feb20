"""The ``projection_state`` table: small facts about the projection itself (e.g. its id)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from kanade.backend.store.tables import projection_state
from kanade.backend.store.upsert import insert


def get_state(conn: Connection, key: str) -> str | None:
    value = conn.execute(
        select(projection_state.c.value).where(projection_state.c.key == key)
    ).scalar_one_or_none()
    return None if value is None else str(value)


def set_state_if_absent(conn: Connection, key: str, value: str, now: datetime) -> bool:
    """Store ``key`` unless present; True when this call created it."""
    stmt = insert(conn, projection_state).on_conflict_do_nothing(index_elements=["key"])
    return conn.execute(stmt, {"key": key, "value": value, "updated_at": now}).rowcount == 1


def set_state(conn: Connection, key: str, value: str, now: datetime) -> None:
    """Store ``key``, replacing what it held."""
    stmt = insert(conn, projection_state)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        ),
        {"key": key, "value": value, "updated_at": now},
    )


def clear_state(conn: Connection, key: str) -> None:
    conn.execute(delete(projection_state).where(projection_state.c.key == key))
