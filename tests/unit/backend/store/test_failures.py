"""A failure of the database is retried; a row it refuses is not (on both dialects)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from store_rows import T0

from kanade.backend.store.failures import is_transient
from kanade.backend.store.tables import projection_state


def _error(engine: Engine, sql: str, **params: object) -> BaseException:
    with pytest.raises(Exception) as caught, engine.begin() as conn:
        conn.execute(text(sql), params)
    return caught.value


def test_a_table_gone_is_transient(engine: Engine) -> None:
    # PostgreSQL calls it a ProgrammingError (42P01), SQLite an OperationalError.
    assert is_transient(_error(engine, "SELECT * FROM results_away"))


def test_a_refused_row_is_not_transient(engine: Engine) -> None:
    row = {"key": "k", "value": "v", "updated_at": T0}
    with engine.begin() as conn:
        conn.execute(projection_state.insert(), row)
    with pytest.raises(Exception) as duplicate, engine.begin() as conn:
        conn.execute(projection_state.insert(), row)
    assert not is_transient(duplicate.value)
    # An integer beyond 64 bits, then (PostgreSQL) a NUL byte in text.
    assert not is_transient(_error(engine, "SELECT CAST(:n AS INTEGER)", n=2**70))


def test_connection_and_io_failures_are_transient() -> None:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    class Orig(Exception):
        def __init__(self, sqlstate: str | None) -> None:
            self.sqlstate = sqlstate

    def wrapped(cls: type[Exception], sqlstate: str | None) -> BaseException:
        return cls("stmt", {}, Orig(sqlstate))  # type: ignore[call-arg]

    assert is_transient(wrapped(OperationalError, "57P01"))  # admin shutdown
    assert is_transient(wrapped(OperationalError, "53100"))  # disk full
    assert is_transient(wrapped(OperationalError, "40P01"))  # deadlock
    assert is_transient(wrapped(ProgrammingError, "42P01"))  # table gone
    assert not is_transient(wrapped(OperationalError, "22003"))  # out of range
    assert is_transient(wrapped(OperationalError, None))  # SQLite: locked, I/O
    assert not is_transient(wrapped(ProgrammingError, None))


def test_a_transaction_whose_connection_was_lost_is_transient() -> None:
    # SQLAlchemy's answer to any use of a connection the server dropped mid-transaction.
    from sqlalchemy.exc import PendingRollbackError

    assert is_transient(PendingRollbackError("Can't reconnect until invalid transaction is "
                                             "rolled back"))  # fmt: skip
