"""The database handle and the migrations, on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.engine import Connection
from store_rows import T0

from kanade.backend.store.database import (
    Database,
    create_engine,
    database_url,
    safe_url,
    sync_url,
    tag_commit,
)
from kanade.backend.store.failures import is_transient
from kanade.backend.store.migrate import upgrade, upgrade_sync
from kanade.backend.store.projection_state import set_state_if_absent
from kanade.backend.store.tables import metadata, projection_state
from pgdb import PostgresDatabases


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


async def test_replicas_on_one_postgresql_write_one_after_the_other(migrated_url: str) -> None:
    # Two backend replicas are two Database handles on one PostgreSQL database (SPEC §9).
    # A unit of work reads and then writes (a projector batch recounts an exec's counters
    # from its rows): interleaved under READ COMMITTED, one replica's write would be lost.
    if not migrated_url.startswith("postgresql"):
        pytest.skip("replicas share PostgreSQL (SPEC §9); one SQLite file has one writer")
    a, b = Database(migrated_url), Database(migrated_url)

    def bump(conn: Connection) -> None:
        row = conn.execute(
            select(projection_state.c.value).where(projection_state.c.key == "counter")
        ).scalar_one()
        time.sleep(0.002)  # the window another replica's write would fall into
        conn.execute(
            update(projection_state)
            .where(projection_state.c.key == "counter")
            .values(value=str(int(row) + 1))
        )

    try:
        await a.write(lambda conn: set_state_if_absent(conn, "counter", "0", T0))
        await asyncio.gather(*(db.write(bump) for _ in range(40) for db in (a, b)))
        count = await a.read(
            lambda conn: conn.execute(
                select(projection_state.c.value).where(projection_state.c.key == "counter")
            ).scalar_one()
        )
        assert int(count) == 80
    finally:
        a.close()
        b.close()


async def test_a_fenced_write_commits_nothing_once_the_fence_refuses(db: Database) -> None:
    allowed = [True]

    def fence(_conn: Connection) -> None:
        if not allowed[0]:
            raise RuntimeError("lease lost")

    fenced = db.fenced(fence)
    await fenced.write(lambda conn: set_state_if_absent(conn, "one", "v", T0))
    allowed[0] = False
    with pytest.raises(RuntimeError, match="lease lost"):
        await fenced.write(lambda conn: set_state_if_absent(conn, "two", "v", T0))
    await db.write(lambda conn: set_state_if_absent(conn, "three", "v", T0))  # unfenced
    keys = await db.read(lambda conn: set(conn.execute(select(projection_state.c.key)).scalars()))
    assert {"one", "three"} <= keys and "two" not in keys


async def test_a_fenced_view_sees_the_writes_waiting_on_the_original(db: Database) -> None:
    # Retention writes through the deciders' fenced view and pauses while the projectors'
    # writes (on the original) wait: both must count the same pending writes.
    view = db.fenced(lambda conn: None)
    started, release = threading.Event(), threading.Event()

    def slow(conn: Connection) -> None:
        started.set()
        release.wait(10)

    writing = asyncio.ensure_future(db.write(slow))
    assert await asyncio.to_thread(started.wait, 10)
    assert (view.pending_writes, db.pending_writes) == (1, 1)
    release.set()
    await writing
    await view.write(lambda conn: None)
    assert (view.pending_writes, db.pending_writes) == (0, 0)


async def test_a_connection_lost_mid_write_is_a_transient_failure(db: Database) -> None:
    # PostgreSQL going away while a batch is written (a restart, a failover): the projector
    # must see a failure of the database, which it redelivers, and never mistake it for a
    # row the database refuses, which it skips (a result lost).
    if db.dialect != "postgresql":
        pytest.skip("a server connection to lose: PostgreSQL")

    def tagged_then_killed(conn: Connection) -> None:
        tag_commit(conn, "state")
        conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

    with pytest.raises(Exception) as failed:
        await db.write(tagged_then_killed)
    assert is_transient(failed.value), repr(failed.value)
    assert await db.read(lambda conn: conn.execute(text("SELECT 1")).scalar_one()) == 1


def test_a_logged_database_url_never_shows_its_password() -> None:
    assert safe_url("postgresql://kanade:s3cret@db:5432/kanade") == (
        "postgresql://kanade:***@db:5432/kanade"
    )
    assert safe_url("sqlite:////var/lib/kanade.db") == "sqlite:////var/lib/kanade.db"


async def test_replicas_starting_together_migrate_one_after_the_other(
    postgres_databases: PostgresDatabases,
) -> None:
    # A brand-new PostgreSQL database and two replicas upgrading it at the same moment: the
    # second must find the schema current, not race the first to create it.
    name, url = postgres_databases.create(migrated=False)
    try:
        await asyncio.gather(*(upgrade(url) for _ in range(3)))
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        finally:
            engine.dispose()
    finally:
        postgres_databases.drop(name)
