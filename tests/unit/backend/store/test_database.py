"""The database handle and the migrations, on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import Connection
from store_rows import T0

from kanade.backend.store.database import Database, create_engine, database_url, sync_url
from kanade.backend.store.migrate import upgrade_sync
from kanade.backend.store.projection_state import set_state_if_absent
from kanade.backend.store.tables import metadata, projection_state


def test_db_arg_is_a_path_or_a_url(tmp_path: Path) -> None:
    assert database_url(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path}/x.db"
    assert database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert sync_url("sqlite+aiosqlite:////a/b.db") == "sqlite+pysqlite:////a/b.db"
    # PostgreSQL always goes through psycopg 3, whatever driver the URL names.
    assert sync_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert sync_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert sync_url("postgresql+asyncpg://u:p@h/db") == "postgresql+psycopg://u:p@h/db"


def test_a_sqlite_file_gets_its_directory_and_pragmas(tmp_path: Path) -> None:
    url = database_url(str(tmp_path / "sub" / "kanade.db"))
    upgrade_sync(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 1  # NORMAL
            assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    finally:
        engine.dispose()


def test_migrations_match_the_tables_and_are_idempotent(migrated_url: str, engine: Engine) -> None:
    upgrade_sync(migrated_url)  # a second run is a no-op
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []


async def test_a_read_is_one_snapshot_while_the_writer_commits(db: Database) -> None:
    # A read is several SELECTs that must agree (an exec's counters next to its rows): a
    # commit landing between two of them must not show in the second.
    def add(conn: Connection, key: str) -> None:
        set_state_if_absent(conn, key, "v", T0)

    await db.write(lambda conn: add(conn, "before"))

    def read(conn: Connection) -> tuple[int, int]:
        first = conn.execute(select(func.count()).select_from(projection_state)).scalar_one()
        with db.engine.begin() as other:  # another connection commits meanwhile
            add(other, "during")
        second = conn.execute(select(func.count()).select_from(projection_state)).scalar_one()
        return int(first), int(second)

    assert await db.read(read) == (1, 1)
    assert await db.read(
        lambda conn: conn.execute(select(func.count()).select_from(projection_state)).scalar_one()
    ) == 2
