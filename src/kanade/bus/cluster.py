"""A JetStream cluster of embedded brokers on one machine (SPEC §9): ``kanade up
--cluster`` and the tests run three ``nats-server`` processes with routes between them.

Every node is an :class:`~kanade.bus.broker.EmbeddedBroker` with its own store, client,
monitoring and route ports (kept across restarts) and the same route list; they are
launched together and then waited for, because a JetStream cluster node is not ready
before a quorum of its peers runs. Synchronous, like the broker itself.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kanade.bus.broker import (
    BrokerError,
    BrokerSecurity,
    ClusterSpec,
    EmbeddedBroker,
    RouteSecurity,
    free_port,
)

__all__ = ["CLUSTER_NAME", "BrokerCluster"]

CLUSTER_NAME = "kanade"
CLUSTER_FILE_STORE = "6GB"
"""Each node's JetStream file budget: with R3 every node holds a copy of everything (the
topology reserves ~3.9 GiB, bus/topology.py), and a replica count being changed briefly
reserves more; nats-server counts reservations, the disk holds only what is written."""


class BrokerCluster:
    """``size`` brokers on ``host``, node ``i`` storing under ``root / f"n{i}"``."""

    def __init__(
        self,
        root: Path,
        *,
        size: int = 3,
        host: str = "127.0.0.1",
        security: BrokerSecurity | None = None,
        routes: RouteSecurity | None = None,
        client_ports: list[int] | None = None,
        log_dir: Path | None = None,
        preexec: Callable[[], None] | None = None,
        js_max_memory: str = "256MB",
        js_max_file: str = CLUSTER_FILE_STORE,
        taken: set[int] | None = None,
        store_dirs: list[Path] | None = None,
    ) -> None:
        """``client_ports``: one per node (default: free ports). ``taken``: ports the
        caller has promised to someone else (an HTTP port), never picked here.
        ``store_dirs``: one per node (default ``root / f"n{i}"``); giving node 1 a single
        broker's store turns that deployment into a cluster, its data kept."""
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        if client_ports is not None and len(client_ports) != size:
            raise ValueError(f"{size} nodes need {size} client ports, got {len(client_ports)}")
        if store_dirs is not None and len(store_dirs) != size:
            raise ValueError(f"{size} nodes need {size} store dirs, got {len(store_dirs)}")
        stores = store_dirs or [Path(root) / f"n{i + 1}" for i in range(size)]
        avoid = set(taken or ()) | set(client_ports or ())
        route_ports = [_pick(host, avoid) for _ in range(size)]
        monitor_ports = [_pick(host, avoid) for _ in range(size)]
        ports = client_ports or [_pick(host, avoid) for _ in range(size)]
        routes_list = tuple(f"{host}:{p}" for p in route_ports)
        self.nodes = [
            EmbeddedBroker(
                stores[i],
                port=ports[i],
                host=host,
                http_port=monitor_ports[i],
                server_name=f"{CLUSTER_NAME}-{i + 1}",
                security=security,
                cluster=ClusterSpec(
                    name=CLUSTER_NAME,
                    host=host,
                    port=route_ports[i],
                    routes=routes_list,
                    security=routes,
                ),
                log_file=None if log_dir is None else Path(log_dir) / f"nats-{i + 1}.log",
                preexec=preexec,
                js_max_memory=js_max_memory,
                js_max_file=js_max_file,
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        """Every node's client URL: what clients are given (they fail over between them)."""
        return [n.url for n in self.nodes]

    def start(self, timeout: float = 30.0) -> None:
        """Start every node that is not running and wait until all serve JetStream and
        the cluster can place a stream on every node (:meth:`formed`)."""
        for node in self.nodes:
            node.launch()
        self._wait(self.nodes, timeout)
        self._wait_formed(timeout)

    def formed(self) -> bool:
        """The JetStream meta leader sees every other node current and online. Each node's
        health check passes before that; a stream created in between with a copy on every
        node is refused ("no suitable peers for placement, peer offline")."""
        if len(self.nodes) < 2:
            return True
        for node in self.nodes:
            meta = _meta_cluster(node)
            if meta is None or meta.get("leader") != node.server_name:
                continue
            peers = meta.get("replicas") or []
            return len(peers) == len(self.nodes) - 1 and all(
                p.get("current") and not p.get("offline") for p in peers
            )
        return False

    def start_node(self, index: int, timeout: float = 30.0) -> None:
        """(Re)start one node (it rejoins the cluster and catches up)."""
        node = self.nodes[index]
        node.launch()
        self._wait([node], timeout)

    def kill(self, index: int) -> None:
        """SIGKILL one node: a crash, no flush (fault tests)."""
        self.nodes[index].kill()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every node (gracefully, in parallel: a node stopping alone would wait
        for the others' acknowledgement of its leadership transfer)."""
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            for node in self.nodes:
                pool.submit(node.stop, timeout)

    def running(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.is_running()]

    def _wait(self, nodes: list[EmbeddedBroker], timeout: float) -> None:
        errors: list[BrokerError] = []
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            for fut in [pool.submit(n.wait_ready, timeout) for n in nodes]:
                try:
                    fut.result()
                except BrokerError as exc:
                    errors.append(exc)
        if errors:
            for node in self.nodes:
                with contextlib.suppress(Exception):
                    node.kill()
            raise BrokerError("; ".join(str(e) for e in errors))

    def _wait_formed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.formed():
            if time.monotonic() >= deadline:
                states = {n.server_name: _meta_cluster(n) for n in self.nodes}
                for node in self.nodes:
                    with contextlib.suppress(Exception):
                        node.kill()
                raise BrokerError(
                    f"the cluster's nodes serve JetStream but their meta group did not form "
                    f"within {timeout:.0f}s: {states}"
                )
            time.sleep(0.05)  # poll interval: formed() re-reads the state

    def __enter__(self) -> BrokerCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"BrokerCluster({', '.join(self.urls)}, running {self.running()})"


def _pick(host: str, avoid: set[int]) -> int:
    while True:
        port = free_port(host)
        if port not in avoid:
            avoid.add(port)
            return port


def _meta_cluster(node: EmbeddedBroker) -> dict[str, Any] | None:
    """The node's view of the JetStream meta group (monitoring ``/jsz``), None if it
    does not answer."""
    try:
        with urllib.request.urlopen(f"{node.monitor_url}/jsz", timeout=1.0) as resp:
            meta = json.loads(resp.read()).get("meta_cluster")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None
