"""Alembic environment for the kanade projection database.

The backend runs migrations programmatically (``kanade.backend.store.migrate``)
and hands over an open connection in ``config.attributes["connection"]``. The
fallback (plain ``alembic`` CLI with ``sqlalchemy.url`` set) exists so a
developer can autogenerate the next revision against a scratch database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from kanade.backend.store.database import create_engine
from kanade.backend.store.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things in place; batch mode
    # makes alembic copy-and-swap tables so later revisions work on SQLite too.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


_given = config.attributes.get("connection")
if _given is not None:
    _run(_given)
else:
    _url = config.get_main_option("sqlalchemy.url")
    if not _url:
        raise RuntimeError("set sqlalchemy.url or run migrations via kanade.backend.store.migrate")
    _engine = create_engine(_url)
    try:
        with _engine.begin() as _conn:
            _run(_conn)
    finally:
        _engine.dispose()
