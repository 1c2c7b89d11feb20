"""The topology's limits (kanade.bus.topology) against the database's retention defaults."""

from __future__ import annotations

from datetime import timedelta

from kanade.bus.topology import OBJECT_SPECS, STREAM_SPECS
from kanade.core import subjects
from kanade.core.retention import DEFAULT_POLICY


def test_the_streams_keep_what_the_database_keeps() -> None:
    # A database rebuilt from the streams holds what the defaults keep, and no exec comes
    # back without its results (an exec's stream never outlives the results').
    ages = {spec.name: timedelta(seconds=spec.max_age) for spec in STREAM_SPECS}
    limits = DEFAULT_POLICY.limits
    assert ages[subjects.STREAM_RESULTS] == limits["results"].max_age
    assert ages[subjects.STREAM_EXECS] == limits["executions"].max_age
    assert ages[subjects.STREAM_EXECS] <= ages[subjects.STREAM_RESULTS]
    assert ages[subjects.STREAM_AUDIT] == limits["audit"].max_age
    assert ages[subjects.STREAM_DECISIONS] == limits["agent_schedule_decisions"].max_age
    outputs = next(o for o in OBJECT_SPECS if o.bucket == subjects.OBJ_OUTPUTS)
    age = limits["results"].max_age
    assert age is not None and outputs.ttl == age.total_seconds()
