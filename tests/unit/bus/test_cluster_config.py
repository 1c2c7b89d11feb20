"""A cluster node's generated nats-server configuration (kanade.bus.broker, kanade.bus.cluster)
and the replica rule of the topology: routes secured both ways, every node the same route
list, distinct names and ports, R3 from three nodes on."""

from __future__ import annotations

from pathlib import Path

import pytest

from kanade.bus.broker import ClusterSpec, EmbeddedBroker, RouteSecurity
from kanade.bus.cluster import BrokerCluster
from kanade.bus.topology import replicas_for
from kanade.security.files import write_private


def test_a_nodes_routes_demand_mutual_tls_and_the_route_password(tmp_path: Path) -> None:
    secret = tmp_path / "route.secret"
    write_private(secret, "s3cr3t-route\n")
    routes = RouteSecurity(tmp_path / "route.pem", tmp_path / "route.key", tmp_path / "ca.pem",
                           "kanade-route", secret)  # fmt: skip
    spec = ClusterSpec("kanade", "127.0.0.1", 6222, ("127.0.0.1:6222", "127.0.0.1:6223"), routes)
    node = EmbeddedBroker(tmp_path / "n1", port=4222, http_port=8222, server_name="kanade-1",
                          cluster=spec)  # fmt: skip
    conf = node.render_config()
    assert 'listen: "127.0.0.1:6222"' in conf
    assert '"nats-route://kanade-route:s3cr3t-route@127.0.0.1:6223"' in conf
    assert 'user: "kanade-route"' in conf and 'password: "s3cr3t-route"' in conf
    assert "verify: true" in conf and str((tmp_path / "ca.pem").resolve()) in conf
    assert 'server_name: "kanade-1"' in conf


def test_a_cluster_gives_every_node_the_same_routes_and_its_own_ports(tmp_path: Path) -> None:
    c = BrokerCluster(tmp_path, size=3, client_ports=[14222, 14223, 14224], taken={18080})
    specs = [n.cluster for n in c.nodes]
    assert all(s is not None for s in specs)
    assert len({s.routes for s in specs if s is not None}) == 1
    ports = [p for n in c.nodes for p in (n.port, n.http_port)] + [
        s.port for s in specs if s is not None]  # fmt: skip
    assert len(set(ports)) == 9 and 18080 not in ports
    assert [n.server_name for n in c.nodes] == ["kanade-1", "kanade-2", "kanade-3"]
    assert c.urls == [f"nats://127.0.0.1:{p}" for p in (14222, 14223, 14224)]
    with pytest.raises(ValueError, match="3 nodes need 3 client ports"):
        BrokerCluster(tmp_path, size=3, client_ports=[1, 2])


@pytest.mark.parametrize(("nodes", "replicas"), [(1, 1), (2, 1), (3, 3), (5, 3)])
def test_three_copies_from_three_nodes_on(nodes: int, replicas: int) -> None:
    assert replicas_for(nodes) == replicas
