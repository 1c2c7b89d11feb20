"""The ``projection_state`` table: small facts about the projection itself (e.g. its id)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from kanade.backend.store.tables import projection_state
from kanade.backend.store.upsert import insert

DEPLOYMENT_KEY = "deployment"
"""The deployment that owns this database (its authority's account key)."""


def get_state(conn: Connection, key: str) -> str | None:
    value = conn.execute(
        select(projection_state.c.value).where(projection_state.c.key == key)
    ).scalar_one_or_none()
    return None if value is None else str(value)


def set_state_if_absent(conn: Connection, key: str, value: str, now: datetime) -> bool:
    """Store ``key`` unless present; True when this call created it."""
    # RETURNING, not rowcount: psycopg reports no rowcount for an INSERT once SQLAlchemy
    # has closed its cursor, while a returned row means the same on every dialect.
    stmt = (
        insert(conn, projection_state)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(projection_state.c.key)
    )
    row = conn.execute(stmt, {"key": key, "value": value, "updated_at": now}).first()
    return row is not None


def claim_deployment(conn: Connection, deployment: str, now: datetime) -> str | None:
    """Record ``deployment`` as this database's owner unless one is recorded already;
    the other owner if it is not ``deployment``, else None."""
    if set_state_if_absent(conn, DEPLOYMENT_KEY, deployment, now):
        return None
    owner = get_state(conn, DEPLOYMENT_KEY)
    return owner if owner is not None and owner != deployment else None


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
