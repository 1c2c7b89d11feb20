"""Per-request context the auth layer sets and the audit guarantee reads.

Context variables, not function arguments, because the code that writes an audit
record (a service deep below a route, possibly in code another team owns) should
not need the request threaded through to it. The audit mark is a mutable object
held in the variable: a context copied into a task or worker thread shares it, so
a record built anywhere while serving the request marks the request as audited.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass
class AuditMark:
    audited: bool = False


_actor: contextvars.ContextVar[str] = contextvars.ContextVar("kanade_actor", default="anonymous")
_mark: contextvars.ContextVar[AuditMark | None] = contextvars.ContextVar(
    "kanade_audit_mark", default=None
)


def current_actor() -> str:
    """Who is making the current request (``anonymous`` outside a request)."""
    return _actor.get()


def begin_request(
    actor: str,
) -> tuple[AuditMark, contextvars.Token[str], contextvars.Token[AuditMark | None]]:
    mark = AuditMark()
    return mark, _actor.set(actor), _mark.set(mark)


def end_request(
    tokens: tuple[AuditMark, contextvars.Token[str], contextvars.Token[AuditMark | None]],
) -> None:
    _, actor_token, mark_token = tokens
    _actor.reset(actor_token)
    _mark.reset(mark_token)


def mark_audited() -> None:
    """The current request wrote its own audit record; no generic one is needed."""
    mark = _mark.get()
    if mark is not None:
        mark.audited = True
