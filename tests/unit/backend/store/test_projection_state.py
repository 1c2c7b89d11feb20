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


def test_the_first_deployment_claims_the_database_and_others_are_told_its_owner(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        assert projection_state.claim_deployment(conn, "A-account", T0) is None
        assert projection_state.claim_deployment(conn, "A-account", T0) is None  # a replica
        assert projection_state.claim_deployment(conn, "B-account", T0) == "A-account"
        assert projection_state.get_state(conn, projection_state.DEPLOYMENT_KEY) == "A-account"
