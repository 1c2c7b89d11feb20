"""Response of ``/health``."""

from __future__ import annotations

from kanade.backend.api.schemas.common import Schema


class Health(Schema):
    status: str
    """``ok`` or ``degraded``."""
    broker: bool
    db: bool
    version: str
    auth: str
    broker_error: str | None = None
    """Only present while the broker is unreachable and an error is known."""
    replica: str | None = None
    """This backend replica's name (host and HTTP port), as its leases name it."""
    leads: list[str] | None = None
    """The once-per-deployment workers this replica runs now (SPEC §9): ``scheduler``
    (the central scheduler's lease) and/or ``deciders`` (reaper, rollouts, approvals)."""
