"""Remote kill requests: decoding, and how long a kill keeps applying to late commands."""

from __future__ import annotations

import json

import pytest

from kanade.agent.control import KILL_MEMORY_S, KillMemory, kill_request_exec_id


def test_a_kill_request_names_its_exec() -> None:
    assert kill_request_exec_id(json.dumps({"exec_id": "e-1"}).encode()) == "e-1"


@pytest.mark.parametrize(
    "raw", [b"{ torn", b"[]", b"{}", b'"e-1"', b'{"exec_id": null}', b"\xff"]
)
def test_a_malformed_kill_request_is_ignored(raw: bytes) -> None:
    assert kill_request_exec_id(raw) is None


def test_a_kill_is_remembered_until_the_memory_expires() -> None:
    now = [1000.0]
    kills = KillMemory(clock=lambda: now[0])
    kills.remember("old")
    now[0] += KILL_MEMORY_S
    kills.remember("recent")
    assert "old" in kills and "recent" in kills  # exactly KILL_MEMORY_S old: still applies
    now[0] += 1.0
    kills.remember("new")  # each kill forgets the expired ones
    assert "old" not in kills
    assert "recent" in kills and "new" in kills
    assert "never" not in kills
