"""Responses of ``/api/retention``."""

from __future__ import annotations

from kanade.backend.api.schemas.common import Instant, Schema


class TableRetention(Schema):
    """One table's limits (null: that limit is off) and the oldest row it still holds."""

    max_age: str | None
    """Rows older than this are pruned (results by when they were recorded, ended execs by
    when they ended, …: docs/retention.md)."""
    max_rows: int | None
    """At most this many rows are kept, the newest."""
    rows_per: str
    """``table``, or ``schedule`` when ``max_rows`` counts each schedule's rows."""
    oldest: Instant | None
    """The oldest row the table still holds (null: empty)."""


class RetentionRun(Schema):
    """The last complete retention pass."""

    started_at: str
    finished_at: str | None = None
    duration_s: float
    pruned: dict[str, int]
    """Rows deleted per table, an exec's results and approval under their own tables."""
    objects: int
    """Output objects deleted with their results."""
    objects_skipped: int
    """Output objects not deleted now (expired already, broker away): the outputs store's
    age limit removes them."""
    batches: int


class RetentionStatus(Schema):
    interval: str
    """How often a pass starts (one goes on until every table is within its limits)."""
    batch: int
    """Rows deleted per transaction at most."""
    tables: dict[str, TableRetention]
    last_run: RetentionRun | None
    audit_pruned_through: int | None
    """The audit was pruned up to this stream sequence, inclusive: the trail left is
    complete from the next one on (null: nothing pruned in this database)."""
