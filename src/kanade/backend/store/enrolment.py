"""``enroll_tokens`` and ``enrolled_agents``: one-time enrolment tokens and each pc's
broker identity (sync, inside a transaction). Every change is noted for the row's document
in KV ``kanade_state`` (:mod:`kanade.backend.store.state_outbox`): after a wiped database,
an enrolled pc can still be named and revoked, and a used token stays used."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.engine import Connection

from kanade.backend.store.state_outbox import touch
from kanade.backend.store.tables import enroll_tokens, enrolled_agents

# What the API shows of a token: never its hash.
TOKEN_COLUMNS = (
    enroll_tokens.c.token_id,
    enroll_tokens.c.groups,
    enroll_tokens.c.created_by,
    enroll_tokens.c.created_at,
    enroll_tokens.c.expires_at,
    enroll_tokens.c.used_at,
    enroll_tokens.c.used_by_pc,
    enroll_tokens.c.cancelled,
)


def insert_token(
    conn: Connection,
    *,
    token_id: str,
    token_sha256: str,
    groups: list[str],
    created_by: str,
    created_at: datetime,
    expires_at: datetime,
) -> None:
    conn.execute(
        enroll_tokens.insert().values(
            token_id=token_id,
            token_sha256=token_sha256,
            groups=groups,
            created_by=created_by,
            created_at=created_at,
            expires_at=expires_at,
            cancelled=False,
        )
    )
    touch(conn, "enroll_token", token_id)


def get_token(conn: Connection, token_id: str) -> dict[str, Any] | None:
    q = select(*TOKEN_COLUMNS).where(enroll_tokens.c.token_id == token_id)
    row = conn.execute(q).mappings().first()
    return None if row is None else dict(row)


def find_token(conn: Connection, token_sha256: str) -> dict[str, Any] | None:
    """The token whose secret hashes to ``token_sha256`` (with the hash, for the
    caller's constant-time comparison)."""
    q = select(*TOKEN_COLUMNS, enroll_tokens.c.token_sha256).where(
        enroll_tokens.c.token_sha256 == token_sha256
    )
    row = conn.execute(q).mappings().first()
    return None if row is None else dict(row)


def _open(now: datetime) -> Any:
    return and_(
        enroll_tokens.c.used_at.is_(None),
        enroll_tokens.c.cancelled.is_(False),
        enroll_tokens.c.expires_at > now,
    )


def open_tokens(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    """Tokens that can still be used, soonest to expire first."""
    q = select(*TOKEN_COLUMNS).where(_open(now)).order_by(enroll_tokens.c.expires_at)
    return [dict(r) for r in conn.execute(q).mappings()]


def claim_token(conn: Connection, token_id: str, pc_id: str, now: datetime) -> bool:
    """Use the token for ``pc_id`` if it is still open. One conditional UPDATE: of two
    concurrent claims (even from two backend processes) exactly one changes the row."""
    q = (
        update(enroll_tokens)
        .where(enroll_tokens.c.token_id == token_id, _open(now))
        .values(used_at=now, used_by_pc=pc_id)
    )
    if conn.execute(q).rowcount != 1:
        return False
    touch(conn, "enroll_token", token_id)
    return True


def cancel_token(conn: Connection, token_id: str) -> bool:
    """Cancel an unused token; False when it was already used or cancelled."""
    q = (
        update(enroll_tokens)
        .where(
            enroll_tokens.c.token_id == token_id,
            enroll_tokens.c.used_at.is_(None),
            enroll_tokens.c.cancelled.is_(False),
        )
        .values(cancelled=True)
    )
    if conn.execute(q).rowcount != 1:
        return False
    touch(conn, "enroll_token", token_id)
    return True


# --- enrolled agents ---------------------------------------------------------------------
def get_enrolled(conn: Connection, pc_id: str) -> dict[str, Any] | None:
    q = select(enrolled_agents).where(enrolled_agents.c.pc_id == pc_id)
    row = conn.execute(q).mappings().first()
    return None if row is None else dict(row)


def existing(conn: Connection, pc_ids: Iterable[str]) -> set[str]:
    """Those of ``pc_ids`` that are enrolled (revoked ones too)."""
    wanted = sorted(set(pc_ids))
    if not wanted:
        return set()
    q = select(enrolled_agents.c.pc_id).where(enrolled_agents.c.pc_id.in_(wanted))
    return {str(r) for r in conn.execute(q).scalars()}


def enrolled_ids(conn: Connection) -> set[str]:
    """Every enrolled pc id (revoked ones too: they are known names)."""
    return {str(r) for r in conn.execute(select(enrolled_agents.c.pc_id)).scalars()}


def list_enrolled(conn: Connection) -> list[dict[str, Any]]:
    q = select(enrolled_agents).order_by(enrolled_agents.c.pc_id)
    return [dict(r) for r in conn.execute(q).mappings()]


def put_enrolled(
    conn: Connection, *, pc_id: str, public_key: str, token_id: str, now: datetime
) -> None:
    """Record ``public_key`` as the pc's identity, replacing any previous one."""
    conn.execute(enrolled_agents.delete().where(enrolled_agents.c.pc_id == pc_id))
    conn.execute(
        enrolled_agents.insert().values(
            pc_id=pc_id, public_key=public_key, enrolled_at=now, token_id=token_id
        )
    )
    touch(conn, "enrolled", pc_id)


def mark_revoked(conn: Connection, pc_id: str, *, now: datetime, by: str) -> bool:
    """Mark the pc's identity revoked; False when it was already (or is not enrolled)."""
    q = (
        update(enrolled_agents)
        .where(enrolled_agents.c.pc_id == pc_id, enrolled_agents.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by=by)
    )
    if conn.execute(q).rowcount != 1:
        return False
    touch(conn, "enrolled", pc_id)
    return True
