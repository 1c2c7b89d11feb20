"""Leases in the database (kanade.backend.store.leases) on SQLite and PostgreSQL: one
holder at a time, taken over only once expired, a restarted holder taking its own lease
back in a new term, and the fence check that refuses a holder that lost it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine
from store_rows import T0

from kanade.backend.store import leases

TTL = timedelta(seconds=10)


def test_one_holder_at_a_time_until_its_lease_expires(engine: Engine) -> None:
    with engine.begin() as conn:
        assert leases.hold(conn, "deciders", "a:1", "i1", T0, TTL) == 1
        assert leases.hold(conn, "deciders", "b:1", "j1", T0 + TTL / 2, TTL) is None
        assert leases.hold(conn, "deciders", "a:1", "i1", T0 + TTL / 2, TTL) == 1  # renewed
        # a's renewal moved its expiry: b still waits at the first expiry...
        assert leases.hold(conn, "deciders", "b:1", "j1", T0 + TTL, TTL) is None
        # ...and takes over once a has been silent for a whole TTL, in a new term
        assert leases.hold(conn, "deciders", "b:1", "j1", T0 + TTL * 1.5, TTL) == 2
        held = leases.current(conn, "deciders")
    assert held is not None and (held.holder, held.term) == ("b:1", 2)


def test_a_restarted_holder_takes_its_lease_back_at_once_in_a_new_term(engine: Engine) -> None:
    with engine.begin() as conn:
        assert leases.hold(conn, "deciders", "a:1", "before", T0, TTL) == 1
        assert leases.hold(conn, "deciders", "a:1", "after", T0 + TTL / 10, TTL) == 2
        leases.check(conn, "deciders", "a:1", 2)
        with pytest.raises(leases.LeaseLost):  # the previous incarnation is fenced out
            leases.check(conn, "deciders", "a:1", 1)


def test_the_fence_refuses_a_holder_that_lost_the_lease(engine: Engine) -> None:
    with engine.begin() as conn:
        term = leases.hold(conn, "deciders", "a:1", "i1", T0, TTL)
        assert term == 1
        leases.check(conn, "deciders", "a:1", term)
        assert leases.hold(conn, "deciders", "b:1", "j1", T0 + TTL * 2, TTL) == 2
        with pytest.raises(leases.LeaseLost, match="no longer a:1's"):
            leases.check(conn, "deciders", "a:1", term)
        with pytest.raises(leases.LeaseLost):
            leases.check(conn, "other", "b:1", 2)  # a lease nobody ever held


def test_a_released_lease_is_free_at_once(engine: Engine) -> None:
    with engine.begin() as conn:
        assert leases.hold(conn, "deciders", "a:1", "i1", T0, TTL) == 1
        leases.release(conn, "deciders", "b:1", 1, T0)  # not b's: changes nothing
        assert leases.hold(conn, "deciders", "b:1", "j1", T0 + TTL / 10, TTL) is None
        leases.release(conn, "deciders", "a:1", 1, T0 + TTL / 10)
        assert leases.hold(conn, "deciders", "b:1", "j1", T0 + TTL / 5, TTL) == 2
