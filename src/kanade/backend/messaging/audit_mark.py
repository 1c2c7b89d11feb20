"""Whether the request being served already wrote its own audit record.

A context variable, not a function argument, because the code that builds an
:class:`~kanade.core.models.records.AuditRecord` (a service deep below a route,
possibly in code another team owns) should not need the request threaded through to it.
The mark is a mutable object held in the variable: a context copied into a task or worker
thread shares it, so a record built anywhere while serving the request marks it audited.
The audit middleware (:mod:`kanade.backend.api.middleware.audit`) reads it.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass
class AuditMark:
    audited: bool = False


_mark: contextvars.ContextVar[AuditMark | None] = contextvars.ContextVar(
    "kanade_audit_mark", default=None
)

Watch = tuple[AuditMark, contextvars.Token[AuditMark | None]]


def begin_audit() -> Watch:
    """Start watching for an audit record of the current request."""
    mark = AuditMark()
    return mark, _mark.set(mark)


def end_audit(watch: Watch) -> None:
    _mark.reset(watch[1])


def mark_audited() -> None:
    """The current request wrote its own audit record; no generic one is needed."""
    mark = _mark.get()
    if mark is not None:
        mark.audited = True
