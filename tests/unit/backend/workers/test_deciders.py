"""The deciders' lease worker (kanade.backend.workers.deciders) on a real database, with
an injected clock: one replica runs the team, the other takes over once the first has
been silent for a TTL, and the first one's fenced writes are refused from then on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Connection

from kanade.backend.store import leases
from kanade.backend.store.database import Database
from kanade.backend.store.projection_state import set_state_if_absent
from kanade.backend.workers.deciders import Deciders
from kanade.worker import Worker

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TTL_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = T0
        self.mono = 0.0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


class Idle(Worker):
    """A team member that only waits (so a test sees it start and get cancelled)."""

    def __init__(self) -> None:
        super().__init__(interval=3600)
        self.steps = 0

    async def step(self) -> None:
        self.steps += 1


class Replica:
    def __init__(self, db: Database, name: str, clock: Clock) -> None:
        self.fenced: list[Database] = []
        self.team: list[Idle] = []

        def team(fenced: Database) -> list[Worker]:
            self.fenced.append(fenced)
            self.team = [Idle()]
            return list(self.team)

        self.deciders = Deciders(db, team, ttl_s=TTL_S, holder=name, clock=clock,
                                 monotonic=lambda: clock.mono)  # fmt: skip


def _mark(key: str) -> Callable[[Connection], bool]:
    return lambda conn: set_state_if_absent(conn, key, "v", T0)


async def test_one_replica_leads_and_the_other_takes_over_a_silent_one(db: Database) -> None:
    clock = Clock()
    a, b = Replica(db, "a:1", clock), Replica(db, "b:1", clock)
    await a.deciders.step()
    await b.deciders.step()
    assert (a.deciders.leading, b.deciders.leading) == (True, False)
    await asyncio.sleep(0)  # the team's tasks start
    assert a.team[0].steps == 1 and not b.team
    await a.fenced[0].write(_mark("a-wrote"))

    clock.advance(TTL_S / 4)  # a renews in time: b keeps waiting
    await a.deciders.step()
    clock.advance(TTL_S / 2)
    await b.deciders.step()
    assert not b.deciders.leading

    clock.advance(TTL_S * 1.5)  # a is paused (no renewal) past its TTL: b takes over
    await b.deciders.step()
    assert b.deciders.leading and b.deciders.term == 2
    with pytest.raises(leases.LeaseLost):  # a, waking up, can commit nothing more
        await a.fenced[0].write(_mark("a-after-losing"))
    assert not a.deciders.leading  # its renewals are stale, whatever it believes
    await a.deciders.step()  # and its next attempt stops its team
    assert a.deciders.term is None and not a.deciders.leading
    await b.fenced[0].write(_mark("b-wrote"))

    def keys(conn: Connection) -> set[str]:
        return {k for k in ("a-wrote", "a-after-losing", "b-wrote")
                if conn.exec_driver_sql(f"SELECT 1 FROM projection_state WHERE key = '{k}'")
                .first()}  # fmt: skip

    assert await db.read(keys) == {"a-wrote", "b-wrote"}
    await a.deciders.resign()
    await b.deciders.resign()


async def test_a_resigning_replica_hands_over_at_once(db: Database) -> None:
    clock = Clock()
    a, b = Replica(db, "a:1", clock), Replica(db, "b:1", clock)
    await a.deciders.step()
    await b.deciders.step()
    assert a.deciders.leading and not b.deciders.leading
    await a.deciders.resign()  # a clean stop ends its term
    clock.advance(0.001)
    await b.deciders.step()
    assert b.deciders.leading and not a.deciders.leading
    await b.deciders.resign()
