"""``revoked_tokens`` and ``session_cutoffs``: which session tokens no longer count
(sync, inside a transaction). Why a token can be revoked at all, and how:
docs/security.md, "Sessions"."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from kanade.backend.store.tables import revoked_tokens, session_cutoffs
from kanade.backend.store.upsert import insert


def revoke_token(conn: Connection, *, jti: str, username: str, expires_at: datetime) -> None:
    """Void one token until it would have expired (after which it is pruned)."""
    stmt = insert(conn, revoked_tokens).values(jti=jti, username=username, expires_at=expires_at)
    conn.execute(stmt.on_conflict_do_nothing(index_elements=[revoked_tokens.c.jti]))


def revoke_all(conn: Connection, username: str, not_before: datetime) -> None:
    """Void every token of ``username`` issued before ``not_before``."""
    stmt = insert(conn, session_cutoffs).values(username=username, not_before=not_before)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[session_cutoffs.c.username], set_={"not_before": not_before}
        )
    )


def is_revoked(conn: Connection, *, jti: str | None, username: str, issued_at: datetime) -> bool:
    """Whether a token (its id, owner and issue instant) has been revoked."""
    if jti is not None:
        hit = conn.execute(select(revoked_tokens.c.jti).where(revoked_tokens.c.jti == jti))
        if hit.first() is not None:
            return True
    cutoff = conn.execute(
        select(session_cutoffs.c.not_before).where(session_cutoffs.c.username == username)
    ).scalar_one_or_none()
    return cutoff is not None and issued_at < cutoff


def prune_revoked(conn: Connection, now: datetime) -> int:
    """Drop revocations of tokens that have expired by themselves."""
    gone = conn.execute(delete(revoked_tokens).where(revoked_tokens.c.expires_at <= now))
    return int(gone.rowcount)
