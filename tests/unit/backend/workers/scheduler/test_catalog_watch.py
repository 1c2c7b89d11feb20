"""Registering schedules in the leader's view: the ``last_tick`` a schedule resumes from
and the generation that tells a fire prepared from an older definition."""

from __future__ import annotations

from datetime import timedelta

from sched_helpers import NOW, context, schedule

from kanade.backend.workers.scheduler.catalog_watch import CatalogWatch, wanted

MIN = timedelta(minutes=1)


def watch() -> CatalogWatch:
    return CatalogWatch(context(), wake=lambda: None)


def test_a_schedule_never_ticked_starts_now() -> None:
    w = watch()
    w.register(schedule(when={"cron": "*/5 * * * *"}), None, NOW)
    e = w.entries["s"]
    assert e.last_tick == NOW
    assert e.next_due == NOW + 5 * MIN
    assert e.persisted is None  # to be stored by persist_new


def test_last_tick_is_the_newer_of_stored_and_held() -> None:
    w = watch()
    s = schedule(when={"cron": "* * * * *"})
    w.register(s, NOW - 10 * MIN, NOW)
    assert w.entries["s"].last_tick == NOW - 10 * MIN
    w.register(s, NOW - 20 * MIN, NOW)  # an older stored tick does not move it back
    assert w.entries["s"].last_tick == NOW - 10 * MIN
    w.register(s, NOW - 5 * MIN, NOW)
    assert w.entries["s"].last_tick == NOW - 5 * MIN


def test_the_generation_changes_with_the_definition_only() -> None:
    w = watch()
    w.register(schedule(when={"cron": "* * * * *"}), None, NOW)
    first = w.entries["s"].generation
    w.register(schedule(when={"cron": "* * * * *"}), None, NOW)  # a re-read
    assert w.entries["s"].generation == first
    w.register(schedule(when={"cron": "*/2 * * * *"}), None, NOW)  # an edit
    assert w.entries["s"].generation != first


def test_due_leaves_out_what_a_prepared_fire_stands_for() -> None:
    w = watch()
    w.register(schedule("a", when={"cron": "* * * * *"}), NOW - 2 * MIN, NOW)
    w.register(schedule("b", when={"cron": "* * * * *"}), NOW - 2 * MIN, NOW)
    w.register(schedule("c", when={"cron": "* * * * *"}), None, NOW)
    assert [e.schedule.id for e in w.due(NOW, {"b"})] == ["a"]


def test_only_enabled_backend_schedules_are_wanted() -> None:
    assert wanted(schedule(when={"cron": "* * * * *"}))
    assert not wanted(schedule(when={"cron": "* * * * *"}, enabled=False))
    assert not wanted(schedule(when={"cron": "* * * * *"}, runs_on="agent"))
