"""``/api/auth`` (login, me) and ``/api/users`` (admin only, by the role table)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.schemas.auth import LoginResult, Me, User, UserDeleted, UserPage
from kanade.backend.api.schemas.requests import LoginBody, NewUserBody
from kanade.backend.errors import Conflict, Invalid, NotFound, Unauthenticated
from kanade.backend.messaging.audit import publish_audit
from kanade.backend.services.auth import tokens
from kanade.backend.services.auth.authenticator import Authenticator
from kanade.backend.services.auth.passwords import hash_password, verify_password
from kanade.backend.services.container import Services
from kanade.backend.store.users import (
    UserExists,
    add_user,
    count_admins,
    delete_user,
    get_user,
    list_users,
)

router = APIRouter(prefix="/api", tags=["auth"])


def _auth(services: Services) -> Authenticator:
    assert services.auth is not None  # set by the app's lifespan
    return services.auth


@router.post("/auth/login", response_model=LoginResult)
async def login(body: LoginBody, services: ServicesDep) -> dict[str, Any]:
    """Exchange a username and password for a bearer token (auth mode ``jwt``)."""
    auth = _auth(services)
    if auth.mode != "jwt" or auth.jwt_secret is None:
        raise Invalid(
            f"login is not available: the backend runs with auth {auth.mode}"
            + ("; use the static token" if auth.mode == "token" else "")
        )
    user = await services.db.read(lambda conn: get_user(conn, body.username))
    stored = None if user is None else str(user["password_hash"])
    ok = await asyncio.to_thread(verify_password, stored, body.password)
    if not ok or user is None:
        raise Unauthenticated("wrong username or password")
    now = datetime.now(UTC)
    issued = tokens.issue(
        auth.jwt_secret, body.username, str(user["role"]), now=now, ttl=auth.token_ttl
    )
    await publish_audit(services.link.bus, "login", body.username, {"role": user["role"]})
    return {
        "token": issued.token,
        "expires_at": issued.expires_at,
        "username": body.username,
        "role": user["role"],
    }


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
    actor = str(getattr(request.state, "actor", "anonymous"))
    password_hash = await asyncio.to_thread(hash_password, body.password)
    now = datetime.now(UTC)
    try:
        await services.db.write(
            lambda conn: add_user(
                conn,
                username=body.username,
                password_hash=password_hash,
                role=body.role,
                now=now,
                created_by=actor,
            )
        )
    except UserExists:
        raise Conflict(f"user {body.username!r} already exists", username=body.username) from None
    await publish_audit(
        services.link.bus, "user_add", actor, {"username": body.username, "role": body.role}
    )
    return {"username": body.username, "role": body.role, "created_at": now, "created_by": actor}


@router.delete("/users/{username}", response_model=UserDeleted)
async def users_delete(username: str, request: Request, services: ServicesDep) -> dict[str, Any]:
    actor = str(getattr(request.state, "actor", "anonymous"))

    def remove(conn: Any) -> str | None:
        user = get_user(conn, username)
        if user is None:
            return "missing"
        if user["role"] == "admin" and count_admins(conn) <= 1:
            return "last-admin"
        delete_user(conn, username)
        return None

    problem = await services.db.write(remove)
    if problem == "missing":
        raise NotFound(f"user {username!r} not found", username=username)
    if problem == "last-admin":
        raise Conflict(f"{username!r} is the last admin; add another admin first")
    await publish_audit(services.link.bus, "user_delete", actor, {"username": username})
    return {"deleted": username}
