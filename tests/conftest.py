"""Fixtures shared by every test suite: a real nats-server and a connected Bus.

* ``authority``: one deployment trust root for the session (kanade.security.authority).
* ``nats_server``: a fresh :class:`EmbeddedBroker` per test (free ports, own store dir),
  secured by that authority (JWT auth + TLS: no anonymous connection, SPEC §8.1), started
  before the test and stopped after it, even when the test fails. Tests may
  ``restart()``/``kill()``/``start()`` it; teardown copes with any state.
* ``nats_url``: its client URL.
* ``bus``: a :class:`Bus` connected to it as the backend, with the whole topology ensured,
  signing with the session's key like a backend (every command and agent-obeyed KV write).
* ``store_url``: an empty database for the test: a SQLite file in tmp_path, or, for a test
  marked ``stores``, one test per dialect (SQLite and a fresh PostgreSQL database, pgdb.py).
* ``module_store_url``: the same for a module's process stack (one stack per module per
  dialect): an empty database shared by the module's tests, one per dialect when the
  module is marked ``stores`` (``pytestmark``), else SQLite.

Every backend and agent of the session trusts one signing key (:mod:`trust`).

Everything is bounded in time so a broken broker fails the test instead of hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import trust
from kanade.bus import Bus, EmbeddedBroker, ensure_topology
from kanade.security.authority import Authority
from pgdb import PostgresDatabases, fresh_store, store_dialects
from secured import backend_credentials, session_authority

trust.install()

BROKER_START_TIMEOUT = 15.0
BROKER_STOP_TIMEOUT = 10.0
BUS_CONNECT_DEADLINE = 10.0
TOPOLOGY_TIMEOUT = 30.0


@pytest.fixture(scope="session")
def authority() -> Authority:
    return session_authority()


@pytest.fixture
def nats_server(tmp_path: Path, authority: Authority) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(tmp_path / "nats", security=authority.broker_security())
    broker.start(timeout=BROKER_START_TIMEOUT)
    try:
        yield broker
    finally:
        broker.stop(timeout=BROKER_STOP_TIMEOUT)


@pytest.fixture
def nats_url(nats_server: EmbeddedBroker) -> str:
    return nats_server.url


@pytest.fixture
async def bus(nats_url: str, authority: Authority) -> AsyncIterator[Bus]:
    # A short reconnect wait keeps tests that restart the broker fast.
    b = await Bus.connect(
        nats_url,
        name="pytest",
        deadline=BUS_CONNECT_DEADLINE,
        reconnect_time_wait=0.2,
        credentials=backend_credentials(authority),
        signer=trust.signer(),
    )
    try:
        await asyncio.wait_for(ensure_topology(b.js), TOPOLOGY_TIMEOUT)
        yield b
    finally:
        await b.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A test marked ``stores`` runs once per store dialect (SQLite, PostgreSQL).
    if not metafunc.definition.get_closest_marker("stores"):
        return
    if "store_url" in metafunc.fixturenames:
        metafunc.parametrize("store_url", store_dialects(), indirect=True)
    if "module_store_url" in metafunc.fixturenames:
        # Module scope: pytest groups the module's tests by dialect, so a module-scoped
        # stack starts once per dialect, not once per test.
        metafunc.parametrize("module_store_url", store_dialects(), indirect=True, scope="module")


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    """The session's PostgreSQL server (started at the first test that needs it)."""
    dbs = PostgresDatabases()
    try:
        yield dbs
    finally:
        dbs.close()


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty (unmigrated) database: SQLite unless the test is marked ``stores``."""
    yield from fresh_store(request, tmp_path, migrated=False)


@pytest.fixture(scope="module")
def module_store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty (unmigrated) database for a module's stack: SQLite unless the module is
    marked ``stores``; dropped after the module."""
    yield from fresh_store(request, tmp_path_factory.mktemp("store"), migrated=False)
