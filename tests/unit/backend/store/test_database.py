"""The database handle and the migrations, on a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text

from kanade.backend.store.database import create_engine, database_url, sync_url
from kanade.backend.store.migrate import upgrade_sync
from kanade.backend.store.tables import metadata


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = database_url(str(tmp_path / "sub" / "kanade.db"))
    upgrade_sync(url)
    eng = create_engine(url)
    try:
        yield eng
    finally:
        eng.dispose()


def test_db_arg_is_a_path_or_a_url(tmp_path: Path) -> None:
    assert database_url(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path}/x.db"
    assert database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert sync_url("sqlite+aiosqlite:////a/b.db") == "sqlite+pysqlite:////a/b.db"


def test_migrations_match_the_tables_and_are_idempotent(engine: Engine) -> None:
    upgrade_sync(str(engine.url))  # a second run is a no-op
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 1  # NORMAL
        assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
