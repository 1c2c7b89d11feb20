"""A secured broker (JWT auth + TLS, kanade.security.authority) and an in-process backend
connected to it with the authority's backend credential — for the enrolment, revocation
and identity tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from kanade.backend.inprocess import InProcessBackend, in_process_backend
from kanade.backend.settings import Settings
from kanade.bus.broker import EmbeddedBroker
from kanade.bus.credentials import BusCredentials
from kanade.security import nats_jwt
from kanade.security.authority import Authority
from kanade.security.files import write_private
from kanade.security.permissions import agent_inbox_prefix


@contextlib.contextmanager
def secured_broker(base: Path, authority: Authority) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(base / "nats", security=authority.broker_security())
    broker.start(timeout=15)
    try:
        yield broker
    finally:
        broker.stop()


@contextlib.asynccontextmanager
async def secured_backend(
    base: Path, broker: EmbeddedBroker, authority: Authority, db: str | None = None
) -> AsyncIterator[InProcessBackend]:
    """``db``: a database URL (default: a SQLite file in ``base``)."""
    settings = Settings.from_db_arg(
        nats_url=broker.url,
        db=db or str(base / "kanade.db"),
        heartbeat_flush_s=0.05,
        authority_dir=authority.root,
        scheduler=False,
    )
    async with in_process_backend(settings) as backend:
        yield backend


def agent_creds_from_grant(
    grant: dict[str, object], seed: str, path: Path, ca_file: Path, pc_id: str
) -> BusCredentials:
    """What ``kanade-agent enroll`` writes, written by the test: the granted JWT with the
    locally kept seed."""
    write_private(path, nats_jwt.creds_text(str(grant["user_jwt"]), seed))
    return BusCredentials(path, ca_file, agent_inbox_prefix(pc_id))
