"""Telling a failure of the database itself from a row it refuses to store."""

from __future__ import annotations

from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    PendingRollbackError,
)

# SQLSTATE classes that mean "this row": 22 data exception (a value out of range, too
# long, a NUL byte in text), 23 integrity constraint violation. Every other class is the
# database or our schema (08 connection, 40 rollback/deadlock, 53 disk full or out of
# memory, 57 shutdown, 58 I/O, 42P01 a table gone …) and clears up once it is fixed.
_ROW_CLASSES = ("22", "23")


def is_transient(exc: BaseException) -> bool:
    """A failure of the database itself (locked, disk full, I/O, schema gone, connection
    lost), as opposed to a row it cannot store. Transient failures are retried forever:
    giving up on them would lose results."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, PendingRollbackError):
        return True  # the connection was lost inside the transaction: the database, not a row
    if isinstance(exc, DataError | IntegrityError):
        return False
    sqlstate = _sqlstate(exc)
    if sqlstate is not None:
        # PostgreSQL says exactly what failed; the DBAPI class alone does not (a dropped
        # table is a ProgrammingError there, an OperationalError on SQLite).
        return not sqlstate.startswith(_ROW_CLASSES)
    return isinstance(exc, OperationalError | InterfaceError)


def _sqlstate(exc: BaseException) -> str | None:
    if not isinstance(exc, DBAPIError):
        return None
    code = getattr(exc.orig, "sqlstate", None)  # psycopg; SQLite has none
    return code if isinstance(code, str) and len(code) == 5 else None
