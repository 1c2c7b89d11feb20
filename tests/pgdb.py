"""The store dialects a test runs on, and throwaway PostgreSQL databases for it.

The store, projection and API suites run on SQLite AND PostgreSQL (SPEC §9): one
PostgreSQL server per test session (kanade.pgserver: initdb in a temp dir, a free
loopback port, password auth, no fsync), one fresh database per test, dropped after it.
A migrated template database is built once, so a test that wants the schema gets a copy
in ~0.1 s instead of running every migration again.

``KANADE_TEST_DB=sqlite`` (or ``postgresql``) restricts the run to one dialect; the
default is both. A missing PostgreSQL fails the tests that need it, naming the fix
(``make test`` installs it): a silently skipped dialect would hide a broken store.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from kanade.backend.store.database import create_engine, database_url
from kanade.backend.store.migrate import upgrade_sync
from kanade.pgserver import EmbeddedPostgres

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
ALL = (SQLITE, POSTGRESQL)
TEMPLATE = "kanade_migrated"


def store_dialects() -> list[str]:
    """The dialects this run covers (``KANADE_TEST_DB``, comma separated; default both)."""
    raw = os.environ.get("KANADE_TEST_DB", ",".join(ALL))
    chosen = [d.strip() for d in raw.split(",") if d.strip()]
    unknown = sorted(set(chosen) - set(ALL))
    if unknown or not chosen:
        raise ValueError(f"KANADE_TEST_DB={raw!r}: choose from {', '.join(ALL)}")
    return chosen


class PostgresDatabases:
    """A lazily started server handing out fresh databases (blank or migrated)."""

    def __init__(self) -> None:
        self._server: EmbeddedPostgres | None = None
        self._has_template = False
        self._names = itertools.count(1)

    @property
    def server(self) -> EmbeddedPostgres:
        if self._server is None:
            self._server = EmbeddedPostgres(durable=False).start()
        return self._server

    def create(self, *, migrated: bool) -> tuple[str, str]:
        """A new database: (its name, its URL)."""
        template = None
        if migrated:
            if not self._has_template:
                upgrade_sync(self.server.create_database(TEMPLATE))
                self._has_template = True
            template = TEMPLATE
        name = f"t{os.getpid()}_{next(self._names)}"
        return name, self.server.create_database(name, template=template)

    def drop(self, name: str) -> None:
        if self._server is not None:
            self._server.drop_database(name)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None


def sqlite_url(base: Path, *, migrated: bool) -> str:
    url = database_url(str(base / "kanade.db"))
    if migrated:
        upgrade_sync(url)
    return url


def fresh_store(request: pytest.FixtureRequest, tmp_path: Path, *, migrated: bool) -> Iterator[str]:
    """A fresh database of the dialect ``request.param`` (default SQLite); dropped after."""
    if getattr(request, "param", SQLITE) == SQLITE:
        yield sqlite_url(tmp_path, migrated=migrated)
        return
    dbs: PostgresDatabases = request.getfixturevalue("postgres_databases")
    name, url = dbs.create(migrated=migrated)
    try:
        yield url
    finally:
        dbs.drop(name)


def wipe_store(url: str) -> None:
    """Wipe a test database as an operator would lose it: SQLite's files removed, or every
    table of the PostgreSQL database dropped (the database itself, and its URL, stay)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == SQLITE:
        path = Path(str(parsed.database))
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()
        return
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def db_env(db: str | Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that hands a ``kanade-backend`` process its database: ``$KANADE_DB``,
    as an operator does (a PostgreSQL URL holds a password, and every local user can read
    a command line)."""
    return {**(os.environ if env is None else env), "KANADE_DB": str(db)}
