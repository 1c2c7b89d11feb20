"""How long the leader's loop sleeps: until the earliest prepared instant, moment a fire
may be prepared, or due time — never more than a second."""

from __future__ import annotations

from datetime import timedelta

from sched_helpers import NOW, context, entry, schedule

from kanade.backend.workers.scheduler.lease import Lease
from kanade.backend.workers.scheduler.term import MAX_SLEEP_S, Term

S = timedelta(seconds=1)


async def _no_kv() -> object:
    raise AssertionError("no KV in a unit test")


def term(prepare_ahead: timedelta = timedelta(0)) -> Term:
    return Term(context(prepare_ahead=prepare_ahead), Lease(_no_kv, "me"))  # type: ignore[arg-type]


def test_with_nothing_scheduled_it_wakes_every_second() -> None:
    assert term().sleep_s() == MAX_SLEEP_S


def test_it_wakes_for_the_next_due_time() -> None:
    t = term()
    t.catalog.entries["a"] = entry(schedule("a", when={"cron": "* * * * * *"}), NOW + 0.3 * S)
    t.catalog.entries["b"] = entry(schedule("b", when={"cron": "* * * * * *"}), NOW + 0.7 * S)
    t.catalog.entries["c"] = entry(schedule("c", when={"cron": "* * * * * *"}), None)
    assert t.sleep_s() == 0.3


def test_a_past_due_time_means_no_sleep() -> None:
    t = term()
    t.catalog.entries["a"] = entry(schedule("a", when={"cron": "* * * * * *"}), NOW - S)
    assert t.sleep_s() == 0.0


def test_a_preparable_fire_wakes_it_when_preparation_may_start() -> None:
    t = term(prepare_ahead=2 * S)
    t.catalog.entries["a"] = entry(schedule("a", when={"cron": "* * * * * *"}), NOW + 2.5 * S)
    assert t.sleep_s() == 0.5


def test_a_reconcile_poll_is_never_prepared_so_it_wakes_at_the_due_time() -> None:
    t = term(prepare_ahead=2 * S)
    t.catalog.entries["a"] = entry(schedule("a", when={"per_pc": "once"}), NOW + 0.5 * S)
    assert t.sleep_s() == 0.5
