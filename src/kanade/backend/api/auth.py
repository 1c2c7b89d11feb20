"""``/api/auth`` (login, logout, me) and ``/api/users`` (admin only, by the role table)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.params import Username
from kanade.backend.api.request_context import request_actor
from kanade.backend.api.schemas.auth import (
    LoggedOut,
    LoginResult,
    Me,
    User,
    UserDeleted,
    UserPage,
)
from kanade.backend.api.schemas.requests import LoginBody, NewUserBody
from kanade.backend.services.auth import users
from kanade.backend.services.auth.authenticator import ANONYMOUS, Authenticator, Principal
from kanade.backend.services.container import Services
from kanade.backend.store.users import list_users

router = APIRouter(prefix="/api", tags=["auth"])


def _auth(services: Services) -> Authenticator:
    assert services.auth is not None  # set by the app's lifespan
    return services.auth


def _address(request: Request) -> str:
    """The client's address, what failed logins are counted by (behind a reverse proxy,
    run uvicorn with its proxy headers so this is the real client)."""
    return request.client.host if request.client is not None else "unknown"


def _principal(request: Request) -> Principal:
    found = getattr(request.state, "principal", None)
    return found if isinstance(found, Principal) else ANONYMOUS


@router.post(
    "/auth/login",
    response_model=LoginResult,
    responses={429: {"description": "too many failed logins; see the Retry-After header"}},
)
async def login(body: LoginBody, request: Request, services: ServicesDep) -> dict[str, Any]:
    """Exchange a username and password for a bearer token (auth mode ``jwt``). Failed
    attempts are audited; past the limits per user or per address: 429 + Retry-After."""
    return await users.login(
        _auth(services),
        services.db,
        services.link.bus,
        body.username,
        body.password,
        address=_address(request),
    )


@router.post("/auth/logout", response_model=LoggedOut)
async def logout(
    request: Request,
    services: ServicesDep,
    everywhere: Annotated[
        bool, Query(description="log out every session of this user, not only this one")
    ] = False,
) -> dict[str, Any]:
    """Void the presented session token (or, ``everywhere``, all of its user's)."""
    return await users.logout(
        services.db, services.link.bus, _principal(request), everywhere=everywhere
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


@router.delete("/users/{username}/sessions", response_model=LoggedOut)
async def users_revoke_sessions(
    username: Username, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Void every session token of ``username`` (admin)."""
    return await users.revoke_sessions(
        services.db, services.link.bus, username, actor=request_actor(request)
    )


@router.delete("/users/{username}", response_model=UserDeleted)
async def users_delete(
    username: Username, request: Request, services: ServicesDep
) -> dict[str, Any]:
    return await users.delete_user(
        services.db, services.link.bus, username, actor=request_actor(request)
    )
