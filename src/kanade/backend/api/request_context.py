"""Who is making the request being served: set by the auth middleware, read by routes
(:func:`request_actor`, or :func:`current_actor` without threading the request through
every call).

Whether the request wrote its own audit record lives one layer down, in
:mod:`kanade.backend.messaging.audit_mark`, where the records are built.
"""

from __future__ import annotations

import contextvars

from starlette.requests import Request

from kanade.backend.api.policy import Role, allows

_actor: contextvars.ContextVar[str] = contextvars.ContextVar("kanade_actor", default="anonymous")


def current_actor() -> str:
    """Who is making the current request (``anonymous`` outside a request)."""
    return _actor.get()


def enter_actor(actor: str) -> contextvars.Token[str]:
    """Name the actor of the request being served (the auth middleware calls this)."""
    return _actor.set(actor)


def leave_actor(token: contextvars.Token[str]) -> None:
    _actor.reset(token)


def request_actor(request: Request) -> str:
    """The actor the auth middleware put on ``request`` (``anonymous`` if none)."""
    actor = getattr(request.state, "actor", None)
    return str(actor) if actor else "anonymous"


def request_role(request: Request) -> str:
    """The role the auth middleware found for ``request`` ('' for a public caller)."""
    role = getattr(request.state, "role", None)
    return str(role) if role else ""


def has_role(request: Request, needed: Role) -> bool:
    """Whether the caller of ``request`` holds at least ``needed``."""
    return allows(request_role(request), needed)


def is_admin(request: Request) -> bool:
    return has_role(request, "admin")
