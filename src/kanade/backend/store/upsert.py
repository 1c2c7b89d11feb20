"""The dialect pieces every UPSERT shares: an INSERT with ``ON CONFLICT``, IN-list chunks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

IN_CHUNK = 500
"""Chunk for IN (...) lists: far under every backend's bound-parameter limit."""


def insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT that supports ``ON CONFLICT`` (SQLite and PostgreSQL share it)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def chunks(items: Sequence[str], size: int = IN_CHUNK) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
