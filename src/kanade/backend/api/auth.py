"""``/api/auth`` (login, me) and ``/api/users`` (admin only, by the role table)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.request_context import request_actor
from kanade.backend.api.schemas.auth import LoginResult, Me, User, UserDeleted, UserPage
from kanade.backend.api.schemas.requests import LoginBody, NewUserBody, UserChangeBody
from kanade.backend.services.auth import users
from kanade.backend.services.auth.authenticator import Authenticator
from kanade.backend.services.container import Services
from kanade.backend.store.users import list_users

router = APIRouter(prefix="/api", tags=["auth"])


def _auth(services: Services) -> Authenticator:
    assert services.auth is not None  # set by the app's lifespan
    return services.auth


@router.post("/auth/login", response_model=LoginResult)
async def login(body: LoginBody, services: ServicesDep) -> dict[str, Any]:
    """Exchange a username and password for a bearer token (auth mode ``jwt``)."""
    return await users.login(
        _auth(services), services.db, services.link.bus, body.username, body.password
    )


@router.get("/auth/me", response_model=Me)
async def me(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Who the presented credentials belong to."""
    return {
        "actor": getattr(request.state, "actor", "anonymous"),
        "role": getattr(request.state, "role", ""),
        "auth": _auth(services).mode,
    }


@router.get("/users", response_model=UserPage)
async def users_list(services: ServicesDep) -> dict[str, Any]:
    items = await services.db.read(list_users)
    return {"items": items, "total": len(items), "limit": len(items), "offset": 0}


@router.post("/users", status_code=201, response_model=User)
async def users_add(body: NewUserBody, request: Request, services: ServicesDep) -> dict[str, Any]:
    return await users.add_user(
        services.db,
        services.link.bus,
        username=body.username,
        password=body.password,
        role=body.role,
        actor=request_actor(request),
    )


@router.delete("/users/{username}", response_model=UserDeleted)
async def users_delete(username: str, request: Request, services: ServicesDep) -> dict[str, Any]:
    return await users.delete_user(
        services.db, services.link.bus, username, actor=request_actor(request)
    )


@router.patch("/users/{username}", response_model=User)
async def users_change(
    username: str, body: UserChangeBody, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Change a user's role, disable or enable them, or reset their password; the change
    applies to their next request (users are looked up on every request)."""
    return await users.update_user(
        services.db,
        services.link.bus,
        username,
        role=body.role,
        disabled=body.disabled,
        password=body.password,
        actor=request_actor(request),
    )
