"""A backend refuses a database that belongs to another deployment (SPEC §9, issue #16
item 3): replicas share one database, and pointing a backend at the wrong one must fail at
start-up with a message saying so, not mix two deployments' rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from kanade.backend.app import ForeignDatabaseError
from kanade.backend.inprocess import in_process_backend
from kanade.backend.settings import Settings
from kanade.security.authority import Authority

pytestmark = pytest.mark.stores  # SQLite and PostgreSQL (tests/pgdb.py)


def settings(nats_url: str, db: str, authority: Authority, keys: Path) -> Settings:
    return Settings.from_db_arg(
        nats_url=nats_url,
        db=db,
        authority_dir=authority.root,
        scheduler=False,
        signing_keys_dir=str(keys),
    )


async def test_a_database_of_another_deployment_is_refused(
    nats_url: str, authority: Authority, store_url: str, tmp_path: Path
) -> None:
    ours = settings(nats_url, store_url, authority, tmp_path / "keys")
    async with in_process_backend(ours):
        pass

    other = Authority.create(tmp_path / "other-deployment")
    theirs = settings(nats_url, store_url, other, tmp_path / "other-keys")
    with pytest.raises(ForeignDatabaseError, match="belongs to another deployment"):
        async with in_process_backend(theirs, wait_for_broker=None):
            pass

    # The refusal changed nothing: the owner still starts on it, as a second replica does.
    async with in_process_backend(ours):
        pass
