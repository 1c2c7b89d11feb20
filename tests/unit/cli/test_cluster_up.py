"""``kanade up --cluster``'s choices that need no process: the port ranges it takes and where
its PostgreSQL lives (inside the data dir; a root's in a directory its own user can reach)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from kanade.cli.client import CliError
from kanade.cli.cluster_up import _ports
from kanade.pgserver import server_root


def test_a_port_of_the_range_in_use_is_refused_naming_the_flag() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        first = held.getsockname()[1] - 1
        with pytest.raises(CliError, match="--nats-port and the 2 port"):
            _ports(first, 3, "--nats-port")


def test_postgresql_lives_in_the_data_dir_unless_we_are_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert server_root(tmp_path / "data") == tmp_path / "data" / "postgres"
    monkeypatch.setattr("os.geteuid", lambda: 0)
    root = server_root(tmp_path / "data")
    assert root.parent == Path("/var/tmp") and root.name.startswith("kanade-postgres-")
    assert server_root(tmp_path / "data") == root != server_root(tmp_path / "other")
