"""Watch leases at the agent (kanade.agent.liveout.leases): renewed by each watch message,
ended by time, bounded in number."""

from __future__ import annotations

import pytest

from kanade.agent.liveout import leases as leases_module
from kanade.agent.liveout.leases import WatchLeases


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_lease_lasts_from_its_newest_renewal() -> None:
    clock = Clock()
    leases = WatchLeases(clock)
    leases.watch(["e1"], 30)
    clock.now = 20
    leases.watch(["e1"], 30)
    clock.now = 45
    assert leases.watching("e1")
    clock.now = 50
    assert not leases.watching("e1")
    leases.forget(clock.now)
    assert len(leases) == 0


def test_a_shorter_renewal_never_cuts_a_lease() -> None:
    clock = Clock()
    leases = WatchLeases(clock)
    leases.watch(["e1"], 60)
    leases.watch(["e1"], 5)
    clock.now = 30
    assert leases.watching("e1")


def test_beyond_the_bound_the_soonest_to_end_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leases_module, "MAX_WATCHED", 2)
    clock = Clock()
    leases = WatchLeases(clock)
    leases.watch(["short"], 5)
    leases.watch(["long"], 50)
    leases.watch(["mid"], 20)
    assert len(leases) == 2
    assert not leases.watching("short") and leases.watching("long") and leases.watching("mid")
