"""Fixtures shared by the integration tests: an in-process backend; real agent processes
and a results collector reading the results stream (see agent_harness.py); the command-
consumer provisioning agents need when a test runs them without a backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from agent_harness import AgentFleet, ResultsCollector
from rollout_stack import Stack

from kanade.backend.inprocess import InProcessBackend, in_process_backend
from kanade.backend.settings import Settings
from kanade.backend.workers.provisioning import ConsumerProvisioner
from kanade.bus.connection import Bus
from kanade.security.authority import Authority
from secured import connect_backend

# A test using one of these has a backend answering agents' consumer requests.
_BACKENDS = ("backend", "stack")


@pytest.fixture
async def backend(
    nats_url: str, store_url: str, authority: Authority
) -> AsyncIterator[InProcessBackend]:
    """The whole backend in this process on the session broker and a fresh database
    (SQLite; PostgreSQL too in a module marked ``stores``), heartbeats flushed every 50 ms;
    a test module needing other settings overrides it."""
    settings = Settings.from_db_arg(
        nats_url=nats_url,
        db=store_url,
        authority_dir=authority.root,
        heartbeat_flush_s=0.05,
    )
    async with in_process_backend(settings) as b:
        yield b


@pytest.fixture
def stack(tmp_path: Path, authority: Authority, store_url: str) -> Iterator[Stack]:
    """Broker + backend processes under tmp_path (rollout_stack.Stack) on ``store_url``,
    closed afterwards."""
    s = Stack(tmp_path, authority, store_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def module_stack(
    tmp_path_factory: pytest.TempPathFactory, authority: Authority, module_store_url: str
) -> Iterator[Stack]:
    """One broker and database (``module_store_url``: per dialect for a ``stores`` module)
    for a module whose tests do not interfere (each process start costs seconds on a loaded
    2-core machine). A module opts in by overriding ``stack`` with
    ``yield from module_stack.for_one_test()``: each test starts its own backends (its own
    settings), stopped after it."""
    s = Stack(tmp_path_factory.mktemp("stack"), authority, module_store_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
async def fleet(
    request: pytest.FixtureRequest, tmp_path: Path, authority: Authority
) -> AsyncIterator[AgentFleet]:
    """Agents started under tmp_path, on the test's ``stack`` broker if it uses one, else on
    ``nats_url``; each with its own broker identity; they and every script they started
    die afterwards. Without a backend, the fixture answers their consumer requests itself
    (the backend's :class:`ConsumerProvisioner`, on its own connection)."""
    if "stack" in request.fixturenames:
        url = request.getfixturevalue("stack").broker.url
    else:
        url = request.getfixturevalue("nats_url")
    provisioner: ConsumerProvisioner | None = None
    provisioner_bus: Bus | None = None
    if not any(name in request.fixturenames for name in _BACKENDS):
        provisioner_bus = await connect_backend(
            url, authority, name="pytest-provisioner", reconnect_time_wait=0.2
        )
        provisioner = ConsumerProvisioner()
        await provisioner.subscribe(provisioner_bus)
    f = AgentFleet(tmp_path / "agents", url, authority)
    try:
        yield f
    finally:
        try:
            await f.aclose()
        finally:
            f.close()
            if provisioner is not None:
                await provisioner.close()
            if provisioner_bus is not None:
                await provisioner_bus.close()


@pytest.fixture
async def collector(bus: Bus) -> AsyncIterator[ResultsCollector]:
    c = await ResultsCollector(bus.nc).start()
    try:
        yield c
    finally:
        await c.close()
