"""Fixtures shared by the unit tests that need a real, migrated SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from kanade.backend.store.database import create_engine, database_url
from kanade.backend.store.migrate import upgrade_sync


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A SQLite file in tmp_path with every migration applied (sync engine)."""
    url = database_url(str(tmp_path / "kanade.db"))
    upgrade_sync(url)
    eng = create_engine(url)
    try:
        yield eng
    finally:
        eng.dispose()
