"""The dialect pieces every UPSERT shares: an INSERT with ``ON CONFLICT``, a batch as one
statement, ``greatest``, IN-list chunks."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, Table, Text, bindparam, cast, column, func, select
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

    PostgreSQL: ``INSERT … SELECT * FROM jsonb_to_recordset(<the batch as one JSON
    document>)``, one statement and one parameter for the whole batch. psycopg runs an
    executemany as one pipelined statement per row, and the server executing thousands of
    them one by one was most of the time a projected batch took; an array per column
    (``unnest``) made it one statement, but psycopg then dumped every element in Python
    (docs/performance.md, "Ingest into PostgreSQL"). The JSON is written by the C encoder
    and parsed by the server. SQLite: the same INSERT as an executemany (in-process, a row
    costs no round trip)."""
    if conn.dialect.name != "postgresql":
        return sqlite.insert(table), list(rows)
    names = tuple(rows[0])
    stmt = postgresql.insert(table).from_select(names, _recordset(table, names))
    binds = [(n, _bind(conn, table.c[n].type)) for n in names]
    doc = [{n: _jsonable(bind(r[n]) if bind else r[n]) for n, bind in binds} for r in rows]
    return stmt, {"batch_rows": json.dumps(doc, separators=(",", ":"), ensure_ascii=False)}


def _bind(conn: Connection, type_: TypeEngine[Any]) -> Any:
    # A column type's own bind step (CleanText drops NUL, UtcDateTime makes UTC), as SQLAlchemy
    # applies it to a bound value.
    return type_.bind_processor(conn.dialect) if isinstance(type_, TypeDecorator) else None


def _jsonable(value: Any) -> Any:
    # The server reads an instant back from its ISO form (with its offset) into the record's
    # timestamptz column, and a non-finite float from its name (JSON has no NaN); everything
    # else here is a JSON value already.
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _record_type(type_: TypeEngine[Any]) -> TypeEngine[Any]:
    # A length-bounded VARCHAR is read as TEXT: the column refuses a value too long (a refused
    # row, as row by row), where a record field of VARCHAR(n) could cut it silently.
    if isinstance(type_, TypeDecorator):
        type_ = type_.impl_instance
    if isinstance(type_, String):
        return Text()
    return type_


@functools.cache
def _recordset(table: Table, names: tuple[str, ...]) -> Any:
    doc = cast(bindparam("batch_rows", type_=Text()), postgresql.JSONB)
    fields = [column(n, _record_type(table.c[n].type)) for n in names]
    rows = func.jsonb_to_recordset(doc).table_valued(*fields).render_derived(with_types=True)
    return select(*rows.c)


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
