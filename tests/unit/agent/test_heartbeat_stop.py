"""The agent's goodbye (SPEC §4.3): a clean stop sends one last heartbeat saying it is
stopping, flushed, and no ordinary heartbeat can follow it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kanade.agent.heartbeat import Heartbeats
from kanade.core.models.wire import Heartbeat, decode

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class FakeConnection:
    is_connected = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, Heartbeat]] = []
        self.flushes = 0

    async def publish(self, subject: str, data: bytes) -> None:
        self.sent.append((subject, decode(Heartbeat, data)))

    async def flush(self, timeout: int = 0) -> None:
        self.flushes += 1


def heartbeats(nc: Any) -> Heartbeats:
    return Heartbeats(
        pc_id="pc1",
        interval=30,
        connection=lambda: nc,
        groups=lambda: ["web"],
        last_command_at=lambda: None,
        load=lambda: (0, 0),
        schedule_set_version=lambda: None,
        clock=lambda: NOW,
    )


async def test_the_goodbye_is_flushed_and_nothing_follows_it() -> None:
    nc = FakeConnection()
    hb = heartbeats(nc)
    await hb.send()
    assert await hb.goodbye()
    await hb.send()  # e.g. the "reconnected" handler, while the agent is shutting down
    await hb.step()
    assert [(s, h.stopping) for s, h in nc.sent] == [("kanade.hb.pc1", False),
                                                     ("kanade.hb.pc1", True)]  # fmt: skip
    assert nc.flushes == 1


async def test_no_goodbye_without_a_connection() -> None:
    nc = FakeConnection()
    nc.is_connected = False
    assert not await heartbeats(nc).goodbye()
    assert not await heartbeats(None).goodbye()
