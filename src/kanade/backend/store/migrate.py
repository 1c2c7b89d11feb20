"""Run the alembic migrations programmatically at start-up."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from kanade.backend.store.database import WRITER_LOCK, create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    """An alembic config built in code: no alembic.ini to ship or locate."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def upgrade_sync(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Replicas starting together on one database (SPEC §9) migrate one after
                # the other: the second finds the schema current. The writer lock, so no
                # write runs against tables being changed either.
                conn.execute(text(f"SELECT pg_advisory_xact_lock({WRITER_LOCK})"))
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()


async def upgrade(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (idempotent)."""
    await asyncio.to_thread(upgrade_sync, url)
