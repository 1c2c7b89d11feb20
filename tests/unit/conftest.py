"""Fixtures shared by the unit tests that need a real, migrated SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from kanade.backend.store.database import Database, create_engine, database_url
from kanade.backend.store.migrate import upgrade_sync


@pytest.fixture
def migrated_url(tmp_path: Path) -> str:
    """The URL of a SQLite file in tmp_path with every migration applied."""
    url = database_url(str(tmp_path / "kanade.db"))
    upgrade_sync(url)
    return url


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    """A sync engine on the migrated SQLite file."""
    eng = create_engine(migrated_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def db(migrated_url: str) -> Iterator[Database]:
    """The backend's Database handle on the migrated SQLite file."""
    database = Database(migrated_url)
    try:
        yield database
    finally:
        database.close()
