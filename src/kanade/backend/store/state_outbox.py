"""The ``state_outbox`` table: which operator-state documents are out of date in KV.

Every store function that changes an operator-state row (a user, an approval, a rollout,
a schedule's counters) calls :func:`touch` in the same transaction, so a committed change
is never forgotten: the state publisher (:mod:`kanade.backend.workers.state_sync`)
writes the row's document and only then drops the entries it covered. The entry's ``id``
orders changes (it becomes the document's ``seq``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from sqlalchemy import and_, bindparam, delete, func, select
from sqlalchemy.engine import Connection

from kanade.backend.store.database import tag_commit
from kanade.backend.store.tables import state_outbox
from kanade.core.models.opstate import state_key

STATE_CHANGED: Final = "state"
"""The commit tag of a write that touched operator state (see ``Database.listen``)."""


@dataclass(frozen=True)
class Pending:
    key: str
    kind: str
    ref: tuple[str, ...]
    seq: int
    """The newest change of this key: the document written covers every change up to it."""


def touch(conn: Connection, kind: str, *ref: str) -> None:
    """Note that the document ``kind``/``ref`` must be written again."""
    key = state_key(kind, ref)
    conn.execute(state_outbox.insert().values(key=key, kind=kind, ref=list(ref)))
    tag_commit(conn, STATE_CHANGED)


def pending(conn: Connection, limit: int) -> list[Pending]:
    """Up to ``limit`` keys with changes not yet written, oldest change first; each with its
    newest change (what a document written now covers)."""
    newest = (
        select(func.max(state_outbox.c.id).label("seq"))
        .group_by(state_outbox.c.key)
        .scalar_subquery()
    )
    q = (
        select(state_outbox.c.key, state_outbox.c.kind, state_outbox.c.ref, state_outbox.c.id)
        .where(state_outbox.c.id.in_(newest))
        .order_by(state_outbox.c.id)
        .limit(limit)
    )
    return [
        Pending(str(key), str(kind), tuple(str(p) for p in ref), int(seq))
        for key, kind, ref, seq in conn.execute(q)
    ]


def done(conn: Connection, written: Iterable[Pending]) -> None:
    """Drop the entries a written document covered (a change made since stays)."""
    params = [{"b_key": p.key, "b_seq": p.seq} for p in written]
    if params:
        conn.execute(
            delete(state_outbox).where(
                and_(
                    state_outbox.c.key == bindparam("b_key"),
                    state_outbox.c.id <= bindparam("b_seq"),
                )
            ),
            params,
        )


def backlog(conn: Connection) -> int:
    """How many changes wait to be written (``/metrics``, tests)."""
    return int(conn.execute(select(func.count()).select_from(state_outbox)).scalar_one())
