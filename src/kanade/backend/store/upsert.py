"""The dialect pieces every UPSERT shares: an INSERT with ``ON CONFLICT``, a batch as one
statement, ``greatest``, IN-list chunks."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import String, Table, Text, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator, TypeEngine

IN_CHUNK = 500
"""Chunk for IN (...) lists: far under every backend's bound-parameter limit."""


def insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT that supports ``ON CONFLICT`` (SQLite and PostgreSQL share it)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def batch_insert(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> tuple[Any, Any]:
    """``(statement, parameters)`` inserting ``rows`` (all with the same keys, unique on
    the conflict target) in one ``conn.execute``; the caller adds the ``ON CONFLICT``.

    PostgreSQL: ``INSERT … SELECT * FROM unnest(<one array per column>)``, one statement
    for the whole batch. psycopg runs an executemany as one pipelined statement per row,
    and the server executing thousands of them one by one was most of the time a projected
    batch took (docs/performance.md, "Ingest into PostgreSQL"). SQLite: the same INSERT
    as an executemany (in-process, a row costs no round trip)."""
    if conn.dialect.name != "postgresql":
        return sqlite.insert(table), list(rows)
    names = tuple(rows[0])
    stmt = postgresql.insert(table).from_select(names, _unnest(table, names))
    return stmt, {f"u_{n}": [r[n] for r in rows] for n in names}


def _array_item(type_: TypeEngine[Any]) -> TypeEngine[Any]:
    # A length-bounded VARCHAR becomes TEXT in the array: an explicit cast to VARCHAR(n)
    # would cut a value silently, where the column refuses it (a refused row, as before).
    # Column types with a bind step (CleanText, UtcDateTime) keep it, element by element.
    if isinstance(type_, String) and not isinstance(type_, TypeDecorator):
        return Text()
    return type_


@functools.cache
def _unnest(table: Table, names: tuple[str, ...]) -> Any:
    arrays = [
        bindparam(f"u_{n}", type_=postgresql.ARRAY(_array_item(table.c[n].type))) for n in names
    ]
    return select(*func.unnest(*arrays).table_valued(*names).render_derived().c)


def first_of_each(rows: Iterable[Mapping[str, Any]], key: str) -> list[Mapping[str, Any]]:
    """``rows`` with only the first of those sharing ``key``: one INSERT … ON CONFLICT DO
    UPDATE may not touch a row twice on PostgreSQL."""
    seen: dict[Any, Mapping[str, Any]] = {}
    for row in rows:
        seen.setdefault(row[key], row)
    return list(seen.values())


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
