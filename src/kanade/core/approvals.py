"""The pure rules of approvals (SPEC §4.8): when a request expires, who may approve it, and
how a command held back for a decision (or a rollout wave) is issued when it finally goes out.

No clock is read here: every function takes ``now``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from kanade.core.models.wire import Command
from kanade.core.signing import command_expiry

DEFAULT_TTL: Final = timedelta(hours=24)
EXPIRED_REASON: Final = "expired"


def approval_expires_at(requested_at: datetime, ttl: timedelta) -> datetime:
    return requested_at + ttl


def is_expired(expires_at: datetime, now: datetime) -> bool:
    """Inclusive: at exactly ``expires_at`` the request can no longer be approved."""
    return now >= expires_at


def may_approve(requester: str, approver: str, *, auth_enabled: bool) -> bool:
    """Two-person rule: the approver differs from the requester (unless nobody has an
    identity because auth is disabled)."""
    return approver != requester or not auth_enabled


def lowers_approval(stored_requires: bool, incoming_requires: bool | None) -> bool:
    """Whether replacing a stored job (``incoming_requires`` is the new version's
    ``require_approval``) or deleting it (None) removes its approval requirement — which
    only an admin may do (issue #15: an operator re-posting a gated job without the gate,
    or deleting and re-creating it, must not bypass the two-person rule)."""
    return stored_requires and not incoming_requires


def restamp(command: Command, now: datetime, starting_deadline_s: float | None) -> Command:
    """A stored command issued ``now``: its start deadline counts from the moment it really
    goes out (an approval, a wave's dispatch), not from when it was requested."""
    return command.model_copy(
        update={
            "issued_at": now,
            "expires_at": command_expiry(now),
            "deadline_at": None
            if starting_deadline_s is None
            else now + timedelta(seconds=starting_deadline_s),
        }
    )
