"""Publishing audit records (SPEC §4.10: every mutating call is audited with its actor).

Routes that know what they did publish a specific record (``exec.create``,
``job.revoke``, ``freeze.set`` …: the names are :mod:`kanade.core.auditactions`). For
everything else the auth middleware publishes a generic one after a successful mutating
request: the route's action, the actor and the path parameters, never the body (bodies
carry scripts, env and secrets).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from kanade.backend.messaging.audit_mark import mark_audited
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.auditactions import subject_token
from kanade.core.instants import Clock, system_clock
from kanade.core.models.records import AuditRecord
from kanade.core.models.wire import encode
from kanade.core.msgids import fresh_audit_msg_id

log = structlog.get_logger(__name__)


def audit_record(
    action: str, actor: str, at: datetime, details: dict[str, Any] | None = None
) -> AuditRecord:
    """A record about to be published. Building it marks the current request (if any) as
    audited, so the auth middleware skips its generic record
    (kanade.backend.api.middleware.auth), whoever wrote the route."""
    mark_audited()
    return AuditRecord(action=action, actor=actor, at=at, details=details or {})


async def publish_audit(
    bus: Callable[[], Bus],
    action: str,
    actor: str,
    details: dict[str, Any],
    *,
    at: datetime | None = None,
    clock: Clock = system_clock,
) -> bool:
    """Publish one record; False (and a loud log) when the broker did not take it.

    Never raises: the change it records has already happened, and failing the
    request would only invite a retry that does it twice.
    """
    record = audit_record(action, actor, at or clock(), details)
    try:
        await bus().publish_js(
            subjects.audit_subject(subject_token(action)),
            encode(record),
            msg_id=fresh_audit_msg_id(subject_token(action)),
        )
    except Exception as exc:
        log.error("audit record not written", action=action, actor=actor, error=str(exc))
        return False
    return True


def generic_details(path: str, path_params: dict[str, Any], status: int) -> dict[str, Any]:
    # No method: the action names the verb.
    return {
        "path": path,
        "params": {k: str(v) for k, v in path_params.items()},
        "status": status,
    }
