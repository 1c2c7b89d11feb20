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
