"""Telling a failure of the database itself from a row it refuses to store."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


def is_transient(exc: BaseException) -> bool:
    """A failure of the database itself (locked, disk full, I/O, schema gone, connection
    lost), as opposed to a row it cannot store. Transient failures are retried forever:
    giving up on them would lose results."""
    return isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )
