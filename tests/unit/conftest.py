"""Fixtures shared by the unit tests that need a real, migrated database: every test using
them runs on SQLite and on PostgreSQL (tests/pgdb.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from kanade.backend.store.database import Database, create_engine
from pgdb import fresh_store, store_dialects


@pytest.fixture(params=store_dialects())
def migrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database with every migration applied: a SQLite file in tmp_path, then a
    PostgreSQL database (one test per dialect)."""
    yield from fresh_store(request, tmp_path, migrated=True)


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    """A sync engine on the migrated database."""
    eng = create_engine(migrated_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def db(migrated_url: str) -> Iterator[Database]:
    """The backend's Database handle on the migrated database."""
    database = Database(migrated_url)
    try:
        yield database
    finally:
        database.close()
