"""The projection's own state (its id): set once."""

from __future__ import annotations

from sqlalchemy import Engine
from store_rows import T0

from kanade.backend.store import projection_state


def test_projection_state_is_set_once(engine: Engine) -> None:
    with engine.begin() as conn:
        assert projection_state.set_state_if_absent(conn, "db_id", "a", T0) is True
        assert projection_state.set_state_if_absent(conn, "db_id", "b", T0) is False
        assert projection_state.get_state(conn, "db_id") == "a"
