"""Credentials for tests: every broker a test starts is secured (SPEC §8.1), so every
client a test makes proves who it is — the backend's identity for test drivers, one
identity per agent (issued into its trust dir, as ``kanade up`` does for its own agents).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import trust
from kanade.bus.connection import Bus
from kanade.bus.credentials import BusCredentials
from kanade.core import subjects
from kanade.core.instants import system_clock
from kanade.core.models.membership import Membership
from kanade.security.authority import Authority

REGISTER_TIMEOUT_S = 20.0


@functools.cache
def session_authority() -> Authority:
    """One trust root for the whole test session (the ``authority`` fixture), also for
    helpers that build settings outside any fixture. Removed at exit."""
    root = Path(tempfile.mkdtemp(prefix="kanade-test-authority-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return Authority.create(root / "security")


def authority_dir() -> Path:
    """What a backend under test gets as ``--authority``."""
    return session_authority().root


def backend_credentials(authority: Authority) -> BusCredentials:
    """The backend's (unrestricted) identity: what test drivers connect with."""
    return BusCredentials(authority.backend_creds, authority.ca_file)


def trust_dir(data_dir: Path) -> Path:
    """An agent's default trust dir (AgentSettings.trust_path)."""
    return data_dir / "trust"


def issue_agent(authority: Authority, pc_id: str, data_dir: Path) -> str:
    """Give the agent that will run on ``data_dir`` its own broker identity."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return authority.issue_agent(pc_id, trust_dir(data_dir))


async def connect_backend(
    url: str | list[str],
    authority: Authority,
    *,
    name: str = "pytest",
    deadline: float = 10.0,
    **opts: Any,
) -> Bus:
    # Signing like a backend: the KV documents a test writes (group membership) are
    # obeyed by agents only when signed (SPEC §8.2).
    opts.setdefault("signer", trust.signer())
    return await Bus.connect(
        url, name=name, deadline=deadline, credentials=backend_credentials(authority), **opts
    )


async def put_groups(bus: Bus, pc_id: str, groups: Iterable[str]) -> None:
    """Group membership lives in KV (SPEC §3.7): the backend provisions an agent's command
    consumer from it, never from what the agent claims. Written as the backend writes it:
    each group joined now (SPEC §3.2)."""
    wanted = sorted(set(groups))
    if wanted:
        kv = await bus.kv(subjects.KV_GROUPS)
        await kv.put(pc_id, Membership().with_groups(wanted, system_clock()).encode())


async def _register(url: str, authority: Authority, pc_id: str, groups: list[str]) -> None:
    give_up = time.monotonic() + REGISTER_TIMEOUT_S
    bus = await connect_backend(url, authority, name=f"pytest-groups:{pc_id}")
    try:
        while True:  # the bucket exists once a backend (or the bus fixture) made the topology
            try:
                await put_groups(bus, pc_id, groups)
                return
            except Exception:
                if time.monotonic() > give_up:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await bus.close()


def register_groups(url: str, authority: Authority, pc_id: str, groups: Iterable[str]) -> None:
    """:func:`put_groups` from synchronous code (harnesses starting agent processes),
    also when called inside a running event loop (the work runs on its own thread)."""
    wanted = sorted(set(groups))
    if not wanted:
        return
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(_register(url, authority, pc_id, wanted))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run, name=f"register-groups-{pc_id}")
    worker.start()
    worker.join(REGISTER_TIMEOUT_S + 5)
    if errors:
        raise errors[0]


def swarm_credentials(authority: Authority, directory: Path) -> BusCredentials:
    """The benchmark swarm's one broad identity (security.permissions.swarm_permissions)."""
    from kanade.security.files import private_dir
    from kanade.security.permissions import swarm_permissions

    private_dir(directory)
    creds = authority.write_creds(directory / "swarm.creds", "kanade-swarm", swarm_permissions())
    return BusCredentials(creds, authority.ca_file)
