"""The dialect pieces every UPSERT shares: an INSERT with ``ON CONFLICT``, a batch as one
statement (COPY into a staging table on PostgreSQL), ``greatest``, IN-list chunks."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Column, MetaData, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

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

    PostgreSQL: the rows are COPied into a session-private staging table shaped like
    ``table``, and the statement is ``INSERT … SELECT`` from it: one statement for the
    whole batch (psycopg runs an executemany as one pipelined statement per row, and the
    server executing thousands of them one by one was most of the time a projected batch
    took), and COPY's rows are formatted by psycopg's C code, where arrays for
    ``unnest`` were dumped element by element in Python — on the process whose one
    interpreter also decodes every message (docs/performance.md, "Session 10"). SQLite:
    the same INSERT as an executemany (in-process, a row costs no round trip)."""
    if conn.dialect.name != "postgresql":
        return sqlite.insert(table), list(rows)
    names = tuple(rows[0])
    staging = _stage(conn, table, names, rows)
    stmt = postgresql.insert(table).from_select(names, select(*(staging.c[n] for n in names)))
    return stmt, {}


def _stage(
    conn: Connection, table: Table, names: tuple[str, ...], rows: Sequence[Mapping[str, Any]]
) -> Table:
    """COPY ``rows`` into ``table``'s staging table, emptied first, and return it.

    The staging table is a temporary table (private to the session, never logged) with
    ``table``'s columns and their types, so a value the column refuses (a too-long id, an
    integer out of range) is refused here in the same way, and its rows are deleted at
    every commit. Created with ``IF NOT EXISTS`` on every call rather than remembered per
    connection: a transaction that rolls back takes a fresh CREATE with it."""
    staging = _staging_table(table)
    quote = conn.dialect.identifier_preparer.quote
    staged, target = quote(staging.name), quote(table.name)
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {staged} (LIKE {target} INCLUDING DEFAULTS)"
        " ON COMMIT DELETE ROWS"
    )
    # Emptied first: two batches of one transaction (started rows, then results) share it.
    conn.exec_driver_sql(f"DELETE FROM {staged}")
    columns = ", ".join(quote(n) for n in names)
    bind = _binders(table, names, conn.dialect)
    copy_rows(conn, f"COPY {staged} ({columns}) FROM STDIN", map(bind, rows))
    return staging


def copy_rows(conn: Connection, statement: str, rows: Iterable[Sequence[Any]]) -> None:
    """Run ``COPY … FROM STDIN`` on ``conn``'s psycopg connection, in its transaction,
    with ``rows`` (values in the statement's column order).

    SQLAlchemy has no COPY, so this goes to the driver; a failure is raised as SQLAlchemy
    would raise it from a statement — a refused value a ``DataError``, a lost server an
    error with ``connection_invalidated`` and the connection invalidated — so
    :func:`kanade.backend.store.failures.is_transient` reads it like any other write's
    (a lost connection taken for a refused row would skip a batch of results)."""
    dialect = conn.dialect
    driver = conn.connection.driver_connection
    dbapi_error = dialect.loaded_dbapi.Error
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(row)
    except dbapi_error as exc:
        lost = dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            statement, None, exc, dbapi_error, connection_invalidated=lost, dialect=dialect
        ) from exc


@functools.cache
def _staging_table(table: Table) -> Table:
    return Table(
        f"kanade_staged_{table.name}",
        MetaData(),
        *(Column(c.name, c.type) for c in table.c),
    )


@functools.cache
def _binders(
    table: Table, names: tuple[str, ...], dialect: Dialect
) -> Callable[[Mapping[str, Any]], list[Any]]:
    """A row's values in ``names`` order, each through its column type's bind step (the
    NUL-cleaning text, the UTC instant), as SQLAlchemy would bind them."""
    steps = [table.c[n].type.bind_processor(dialect) for n in names]
    processed = [(i, step) for i, step in enumerate(steps) if step is not None]
    plain = operator.itemgetter(*names)

    def bind(row: Mapping[str, Any]) -> list[Any]:
        values = list(plain(row)) if len(names) > 1 else [row[names[0]]]
        for i, step in processed:
            values[i] = step(values[i])
        return values

    return bind


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
