"""The planner's decisions: a term decides with the instant it began leading, so an
occurrence due before it (the backend was down, or had not taken the lead yet) is never
on time, however short the outage (issue #14 item 5)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sched_helpers import NOW, context, entry, schedule

from kanade.backend.workers.scheduler.lease import Lease
from kanade.backend.workers.scheduler.planning import Planner
from kanade.backend.workers.scheduler.term import Term

S = timedelta(seconds=1)


async def _no_kv() -> object:
    raise AssertionError("no KV in a unit test")


def test_a_term_decides_with_the_instant_it_began_leading() -> None:
    term = Term(context(), Lease(_no_kv, "me"))  # type: ignore[arg-type]
    assert term.planner.up_since == NOW  # the context's clock


@pytest.mark.parametrize("catchup", ["skip", "once"])
def test_an_occurrence_due_before_the_term_began_follows_catchup(catchup: str) -> None:
    # Killed at 08:29:55, leading again at 08:30:41: the 08:30 occurrence was due while
    # no scheduler was up. 41 s is inside the 60 s late tolerance, which does not apply.
    s = schedule(when={"cron": "30 8 * * *"}, catchup=catchup)
    due = entry(s, NOW, last_tick=NOW - 5 * S)
    up = NOW + 41 * S
    decided = Planner(context(), {}, up_since=up).decide([due], up + S, None)
    if catchup == "skip":
        assert decided.fires == []
        (row,) = decided.rows
        assert (row.result, row.reason, row.count) == ("missed", "catchup_skip", 1)
    else:
        ((_, fire),) = decided.fires
        assert fire.nominal == NOW and fire.caught_up
    assert decided.firsts == {"s": NOW}  # a claim prepared by the dead leader is released


def test_an_occurrence_the_term_was_up_for_fires_on_time_a_little_late() -> None:
    s = schedule(when={"cron": "30 8 * * *"}, catchup="skip")
    decided = Planner(context(), {}, up_since=NOW - S).decide(
        [entry(s, NOW, last_tick=NOW - 5 * S)], NOW + 2 * S, None
    )
    ((_, fire),) = decided.fires
    assert fire.nominal == NOW and not fire.caught_up and decided.rows == []
