"""A secured 3-node JetStream cluster for tests (SPEC §9): three real nats-server
processes on free loopback ports (client, monitoring and route ports), client auth and
TLS from the session's authority, routes secured with mutual TLS and a route password
(kanade.bus.cluster). Start it once per module: it takes about a second."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nats.errors
from nats.js.errors import ServiceUnavailableError

from kanade.bus.broker import EmbeddedBroker
from kanade.bus.cluster import BrokerCluster
from kanade.bus.connection import Bus
from kanade.bus.retry import retry
from kanade.bus.topology import ensure_topology
from kanade.security.authority import Authority

CLUSTER_START_TIMEOUT = 30.0


def secured_cluster(root: Path, authority: Authority, *, size: int = 3) -> BrokerCluster:
    return BrokerCluster(
        root,
        size=size,
        security=authority.broker_security(),
        routes=authority.route_security(),
    )


@contextmanager
def running_cluster(root: Path, authority: Authority, *, size: int = 3) -> Iterator[BrokerCluster]:
    cluster = secured_cluster(root, authority, size=size)
    cluster.start(timeout=CLUSTER_START_TIMEOUT)
    try:
        yield cluster
    finally:
        cluster.stop()


async def ensure_cluster_topology(bus: Bus, timeout: float = 60.0) -> None:
    """``ensure_topology`` on a cluster that just started: a node may still say "JetStream
    not enabled for account" for a moment after its health check passed (the backend's
    own set-up retries the same way)."""
    await retry(lambda: ensure_topology(bus.js), deadline=timeout, base=0.2, cap=2.0,
                retry_on=(ServiceUnavailableError, nats.errors.TimeoutError))  # fmt: skip


def monitor(node: EmbeddedBroker, endpoint: str) -> dict[str, Any]:
    """One of the node's monitoring endpoints (``routez``, ``jsz``, …) as JSON."""
    with urllib.request.urlopen(f"{node.monitor_url}/{endpoint}", timeout=5) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


def route_peers(node: EmbeddedBroker) -> set[str]:
    """The server names ``node`` has a route to."""
    return {str(r.get("remote_name")) for r in monitor(node, "routez").get("routes") or []}
