"""The ``users`` table: usernames, argon2 hashes and roles (sync, inside a transaction).

Every change is also noted for the user's document in KV ``kanade_state``
(:mod:`kanade.backend.store.state_outbox`): a wiped database gets its users back.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection

from kanade.backend.store.state_outbox import touch
from kanade.backend.store.tables import users

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
USERNAME_RULE = "must be 1-64 characters: letters, digits, '.', '_', '@', '-' (not first)"

# What the API shows of a user: never the hash.
PUBLIC_COLUMNS = (users.c.username, users.c.role, users.c.created_at, users.c.created_by)


class UserExists(Exception):
    pass


def get_user(conn: Connection, username: str) -> dict[str, Any] | None:
    row = conn.execute(select(users).where(users.c.username == username)).mappings().first()
    return None if row is None else dict(row)


def list_users(conn: Connection) -> list[dict[str, Any]]:
    q = select(*PUBLIC_COLUMNS).order_by(users.c.username)
    return [dict(r) for r in conn.execute(q).mappings()]


def add_user(
    conn: Connection,
    *,
    username: str,
    password_hash: str,
    role: str,
    now: datetime,
    created_by: str,
    replace: bool = False,
) -> None:
    row = {
        "username": username,
        "password_hash": password_hash,
        "role": role,
        "created_at": now,
        "created_by": created_by,
    }
    # All writes go through the one writer thread, so check-then-insert cannot race
    # another writer of this process; a second process hitting the key is an error.
    if replace:
        conn.execute(delete(users).where(users.c.username == username))
    elif get_user(conn, username) is not None:
        raise UserExists(username)
    conn.execute(users.insert().values(**row))
    touch(conn, "user", username)


def delete_user(conn: Connection, username: str) -> bool:
    if conn.execute(delete(users).where(users.c.username == username)).rowcount != 1:
        return False
    touch(conn, "user", username)
    return True


def count_admins(conn: Connection) -> int:
    q = select(func.count()).select_from(users).where(users.c.role == "admin")
    return int(conn.execute(q).scalar_one())
