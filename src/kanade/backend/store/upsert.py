"""The dialect pieces every UPSERT shares: an INSERT with ``ON CONFLICT``, ``greatest``,
IN-list chunks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

IN_CHUNK = 500
"""Chunk for IN (...) lists: far under every backend's bound-parameter limit."""


def insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT that supports ``ON CONFLICT`` (SQLite and PostgreSQL share it)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def greatest(conn: Connection, a: Any, b: Any) -> ColumnElement[Any]:
    """The larger of two values, NULL only when both are (SQLite's two-argument ``max``
    and PostgreSQL's ``greatest`` disagree on NULLs): an upsert that only moves forward."""
    a2, b2 = func.coalesce(a, b), func.coalesce(b, a)
    if conn.dialect.name == "postgresql":
        return func.greatest(a2, b2)
    return func.max(a2, b2)


def chunks(items: Sequence[str], size: int = IN_CHUNK) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
