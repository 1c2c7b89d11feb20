"""UtcDateTime binds exactly the text SQLAlchemy's SQLite DATETIME would store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects.sqlite import DATETIME

from kanade.backend.store.types import UtcDateTime

SQLITE = sa.create_engine("sqlite://").dialect
REFERENCE = DATETIME().bind_processor(SQLITE)  # type: ignore[no-untyped-call]
FAST = UtcDateTime().bind_processor(SQLITE)

offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)


@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 1, 1)),
    st.none() | offsets,
)
def test_same_stored_text_as_sqlalchemy(value: datetime, tz: timezone | None) -> None:
    if tz is not None:
        value = value.replace(tzinfo=tz)
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    assert REFERENCE is not None and FAST is not None
    assert FAST(value) == REFERENCE(utc.replace(tzinfo=None))


def test_none_and_bad_values() -> None:
    assert FAST is not None
    assert FAST(None) is None
    with pytest.raises(TypeError, match="expected datetime"):
        FAST("2026-01-01")


def test_round_trip_through_sqlite() -> None:
    eng = sa.create_engine("sqlite://")
    meta = sa.MetaData()
    t = sa.Table("t", meta, sa.Column("at", UtcDateTime()))
    meta.create_all(eng)
    when = datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    with eng.begin() as conn:
        conn.execute(sa.insert(t), [{"at": when}])
        got = conn.execute(sa.select(t.c.at)).scalar_one()
        assert got == when and got.tzinfo == UTC
        # Comparisons in SQL work on the stored text.
        n = conn.execute(sa.select(sa.func.count()).where(t.c.at >= when - timedelta(seconds=1)))
        assert n.scalar_one() == 1
