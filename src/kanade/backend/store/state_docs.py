"""Operator-state rows ⇄ their documents in KV ``kanade_state`` (SPEC §1.3).

One document per key: a user, an approval request, an unattended-run approval, a rollout
with its waves, a schedule's counters with its recent decisions. :func:`snapshot` reads the
rows of one key as JSON-ready dicts (None: the row is gone — a tombstone is written);
:func:`restore` writes a document's rows back into an empty place and never over a row the
database already has (a change made here is newer than any document). Why: docs/backend.md,
"A wiped database comes back whole".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Table, and_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from kanade.backend.store.executions import extend_deadline
from kanade.backend.store.rollouts import wave_deadlines
from kanade.backend.store.tables import (
    approvals,
    enroll_tokens,
    enrolled_agents,
    rollout_waves,
    rollouts,
    schedule_decisions,
    schedule_stats,
    unattended_approvals,
    users,
    webhooks,
)
from kanade.backend.store.types import UtcDateTime
from kanade.core.instants import format_instant, parse_instant
from kanade.core.models.opstate import StateDoc
from kanade.core.retention import MAX_DECISIONS_PER_SCHEDULE

Rows = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class _Kind:
    main: Table
    key: tuple[str, ...]
    """The main table's columns the document's ``ref`` names, in order."""
    children: tuple[tuple[Table, str, str], ...] = ()
    """(table, column holding ``ref[0]``, order-by column) of the rows that go with it."""
    fresh: frozenset[str] = frozenset()
    """Child columns not carried (a surrogate id the database assigns again)."""
    newest: int | None = None
    """Carry only this many children, the newest (a bound: retention keeps fewer)."""


KINDS: Final[Mapping[str, _Kind]] = {
    "user": _Kind(users, ("username",)),
    "approval": _Kind(approvals, ("exec_id",)),
    "unattended": _Kind(unattended_approvals, ("job_id", "version")),
    "rollout": _Kind(rollouts, ("rollout_id",), ((rollout_waves, "rollout_id", "idx"),)),
    # The counters, and the decisions log oldest first (re-inserted in that order, so the
    # log reads the same; ids are the new database's). Retention keeps the log short and
    # notes the schedule's document when it prunes it, so the document carries what the
    # database has (store.retention).
    "schedule": _Kind(
        schedule_stats,
        ("schedule_id",),
        ((schedule_decisions, "schedule_id", "id"),),
        fresh=frozenset({"id"}),
        newest=MAX_DECISIONS_PER_SCHEDULE,
    ),
    "enrolled": _Kind(enrolled_agents, ("pc_id",)),
    "enroll_token": _Kind(enroll_tokens, ("token_id",)),
    # Notification webhooks, secrets included: the bucket is the backend's alone.
    "webhook": _Kind(webhooks, ("webhook_id",)),
}


def _where(kind: _Kind, ref: Sequence[str]) -> ColumnElement[bool]:
    if len(ref) != len(kind.key):
        raise ValueError(f"{kind.main.name} is keyed by {len(kind.key)} value(s), got {len(ref)}")
    return and_(*(kind.main.c[col] == val for col, val in zip(kind.key, ref, strict=True)))


def _encode(table: Table, row: Mapping[str, Any], skip: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in table.c:
        if col.name in skip:
            continue
        value = row.get(col.name)
        out[col.name] = format_instant(value) if isinstance(value, datetime) else value
    return out


def _decode(table: Table, data: Mapping[str, Any], skip: frozenset[str]) -> dict[str, Any]:
    """A document's row as column values: unknown keys ignored (a newer writer), instants
    parsed; a value the table refuses fails the restore of that document only."""
    out: dict[str, Any] = {}
    for col in table.c:
        if col.name in skip or col.name not in data:
            continue
        value = data[col.name]
        if isinstance(col.type, UtcDateTime) and isinstance(value, str):
            value = parse_instant(value)
        out[col.name] = value
    return out


def snapshot(conn: Connection, kind_name: str, ref: Sequence[str]) -> Rows | None:
    """The rows of one key as JSON-ready dicts; None when its main row does not exist."""
    kind = KINDS[kind_name]
    main = conn.execute(select(kind.main).where(_where(kind, ref))).mappings().first()
    if main is None:
        return None
    rows: Rows = {kind.main.name: [_encode(kind.main, dict(main), frozenset())]}
    for table, col, order in kind.children:
        q = select(table).where(table.c[col] == ref[0])
        if kind.newest is None:
            found = list(conn.execute(q.order_by(table.c[order])).mappings())
        else:
            q = q.order_by(table.c[order].desc()).limit(kind.newest)
            found = list(conn.execute(q).mappings())[::-1]
        rows[table.name] = [_encode(table, dict(r), kind.fresh) for r in found]
    return rows


def restore(conn: Connection, doc: StateDoc) -> bool:
    """Write ``doc``'s rows unless its main row exists already; True when it wrote them.

    A tombstone, or a document of an unknown kind, writes nothing."""
    kind = KINDS.get(doc.kind)
    if kind is None or doc.deleted:
        return False
    if conn.execute(select(kind.main.c[kind.key[0]]).where(_where(kind, doc.ref))).first():
        return False
    mains = doc.rows.get(kind.main.name) or []
    if len(mains) != 1:
        raise ValueError(f"{doc.key}: expected one {kind.main.name} row, found {len(mains)}")
    conn.execute(kind.main.insert(), [_decode(kind.main, mains[0], frozenset())])
    for table, _col, _order in kind.children:
        children = [_decode(table, r, kind.fresh) for r in doc.rows.get(table.name) or []]
        if children:
            conn.execute(table.insert(), children)
    if kind.main is rollouts:
        # The exec row may already be back (the streams replay meanwhile): its deadline
        # comes from the sent waves (SPEC §4.3); the exec projector does the same otherwise.
        exec_id = str(mains[0]["exec_id"])
        for found, deadline in wave_deadlines(conn, [exec_id]).items():
            extend_deadline(conn, found, deadline)
    return True


def all_refs(conn: Connection) -> list[tuple[str, tuple[str, ...]]]:
    """``(kind, ref)`` of every operator-state key the database holds (to write the
    documents a bucket lacks: a first start with this schema, a broker that lost them)."""
    out: list[tuple[str, tuple[str, ...]]] = []
    for name, kind in KINDS.items():
        cols = [kind.main.c[c] for c in kind.key]
        out += [(name, tuple(str(v) for v in r)) for r in conn.execute(select(*cols))]
    return out
