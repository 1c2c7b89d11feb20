"""Per-request context: the actor (set by the auth middleware) and the audit mark (set by
the audit middleware, raised by whoever builds an audit record).

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


def enter_actor(actor: str) -> contextvars.Token[str]:
    """Name the actor of the request being served (the auth middleware calls this)."""
    return _actor.set(actor)


def leave_actor(token: contextvars.Token[str]) -> None:
    _actor.reset(token)


def begin_audit() -> tuple[AuditMark, contextvars.Token[AuditMark | None]]:
    """Start watching for an audit record of the current request (the audit middleware)."""
    mark = AuditMark()
    return mark, _mark.set(mark)


def end_audit(watch: tuple[AuditMark, contextvars.Token[AuditMark | None]]) -> None:
    _mark.reset(watch[1])


def mark_audited() -> None:
    """The current request wrote its own audit record; no generic one is needed."""
    mark = _mark.get()
    if mark is not None:
        mark.audited = True
