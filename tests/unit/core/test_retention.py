"""Retention settings (kanade.core.retention): the defaults and ``--retain FIELD=VALUE``
overrides — every bad one refused with its field path."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kanade.core.retention import (
    DEFAULT_POLICY,
    TABLES,
    RetentionError,
    parse_overrides,
)

DAY = timedelta(days=1)


def test_every_growing_table_has_a_default_age() -> None:
    limits = DEFAULT_POLICY.limits
    assert set(limits) == set(TABLES)
    assert all(limits[t].max_age is not None for t in TABLES)
    assert limits["results"].max_age == 30 * DAY
    assert limits["results"].max_rows == 10_000_000
    assert limits["schedule_decisions"].per == "schedule"
    assert limits["schedule_decisions"].max_rows == 200


def test_overrides_apply_in_order() -> None:
    policy = parse_overrides(
        [
            "results.max_age=60d",
            "retention.audit.max_rows=off",
            "executions.max_rows=2_000",
            "interval=1m",
            "batch=250",
            "schedule_decisions.max_rows=500",
        ]
    )
    assert policy.limit("results").max_age == 60 * DAY
    assert policy.limit("results").max_rows == 10_000_000  # untouched
    assert policy.limit("audit").max_rows is None
    assert policy.limit("executions").max_rows == 2000
    assert policy.limit("schedule_decisions").max_rows == 500
    assert policy.interval == timedelta(minutes=1)
    assert policy.batch == 250
    assert DEFAULT_POLICY.limit("results").max_age == 30 * DAY  # the default is unchanged
    assert policy.describe()["tables"]["results"] == {
        "max_age": "60d",
        "max_rows": 10_000_000,
        "rows_per": "table",
    }


@pytest.mark.parametrize(
    ("item", "field", "says"),
    [
        ("results.max_age=3x", "retention.results.max_age", "not a duration"),
        ("results.max_age=30", "retention.results.max_age", "not a duration"),
        ("results.max_age=10s", "retention.results.max_age", "out of range"),
        ("results.max_rows=-5", "retention.results.max_rows", "not a whole number"),
        ("results.max_rows=0", "retention.results.max_rows", "out of range"),
        ("resluts.max_age=3d", "retention.resluts", "did you mean results?"),
        ("results.max_agee=3d", "retention.results.max_agee", "did you mean max_age?"),
        ("results=3d", "retention.results", "name a limit"),
        ("intervall=1m", "retention.intervall", "did you mean interval?"),
        ("interval=0s", "retention.interval", "out of range"),
        ("batch=5", "retention.batch", "out of range"),
        ("batch=off", "retention.batch", "out of range"),
        ("schedule_decisions.max_rows=20000", "retention.schedule_decisions.max_rows", "10000"),
        ("enroll_tokens.max_rows=5", "retention.enroll_tokens.max_rows", "by age only"),
        ("results.max_age", "retention.results.max_age", "not FIELD=VALUE"),
        ("=3d", "retention.?", "not FIELD=VALUE"),
    ],
)
def test_a_bad_setting_is_refused_with_its_field(item: str, field: str, says: str) -> None:
    with pytest.raises(RetentionError) as caught:
        parse_overrides(["results.max_age=60d", item])
    assert caught.value.field == field
    assert str(caught.value).startswith(field + ": ")
    assert says in str(caught.value)
