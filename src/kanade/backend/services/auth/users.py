"""Users and sessions (auth mode ``jwt``): exchange a password for a token (failed attempts
limited, audited and logged), log a session or all of a user's sessions out, add, change
(role, disabled, password) and delete users — the last admin who can sign in can be neither
deleted, demoted nor disabled. Each change is audited."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy.engine import Connection

from kanade.backend.errors import Conflict, Invalid, NotFound, RateLimited, Unauthenticated
from kanade.backend.messaging.audit import publish_audit
from kanade.backend.services.auth import tokens
from kanade.backend.services.auth.authenticator import Authenticator, Principal
from kanade.backend.services.auth.passwords import hash_password, verify_password
from kanade.backend.store import sessions, users
from kanade.backend.store.database import Database
from kanade.bus.connection import Bus
from kanade.core.instants import system_clock

log = structlog.get_logger(__name__)


async def login(
    auth: Authenticator,
    db: Database,
    bus: Callable[[], Bus],
    username: str,
    password: str,
    *,
    address: str = "unknown",
) -> dict[str, Any]:
    """A bearer token for ``username``; the same error whether the user or the password
    is wrong (no user enumeration). Past the failure limits of ``username`` or of the
    client ``address`` the answer is :class:`RateLimited`, before any password check."""
    if auth.mode != "jwt" or auth.jwt_secret is None:
        raise Invalid(
            f"login is not available: the backend runs with auth {auth.mode}"
            + ("; use the static token" if auth.mode == "token" else "")
        )
    wait = auth.limiter.retry_after(username, address)
    if wait is not None:
        seconds, why = wait
        log.warning("login refused: too many failures", username=username, address=address,
                    retry_after_s=round(seconds))
        raise RateLimited(
            f"too many failed logins ({why}); retry in {max(1, round(seconds))}s",
            retry_after_s=seconds,
        )
    # A name no user can have is not looked up: it is a wrong login like any unknown name
    # (and PostgreSQL refuses some outright: a NUL character is a DataError there).
    user = None
    if users.USERNAME_RE.fullmatch(username):
        user = await db.read(lambda conn: users.get_user(conn, username))
    stored = None if user is None else str(user["password_hash"])
    ok = await asyncio.to_thread(verify_password, stored, password)
    if not ok or user is None:
        auth.limiter.failed(username, address)
        log.warning("failed login", username=username, address=address)
        await publish_audit(bus, "user.login_fail", username, {"address": address})
        raise Unauthenticated("wrong username or password")
    auth.limiter.succeeded(username)
    if user.get("disabled_at") is not None:  # told only to whoever knows the password
        raise Unauthenticated(f"user {username!r} is disabled; ask an admin")
    now = system_clock()
    issued = tokens.issue(auth.jwt_secret, username, str(user["role"]), now=now, ttl=auth.token_ttl)
    await publish_audit(bus, "user.login", username, {"role": user["role"], "address": address})
    return {
        "token": issued.token,
        "expires_at": issued.expires_at,
        "username": username,
        "role": user["role"],
    }


async def add_user(
    db: Database, bus: Callable[[], Bus], *, username: str, password: str, role: str, actor: str
) -> dict[str, Any]:
    password_hash = await asyncio.to_thread(hash_password, password)
    now = system_clock()
    try:
        await db.write(
            lambda conn: users.add_user(
                conn,
                username=username,
                password_hash=password_hash,
                role=role,
                now=now,
                created_by=actor,
            )
        )
    except users.UserExists:
        raise Conflict(f"user {username!r} already exists", username=username) from None
    await publish_audit(bus, "user.create", actor, {"username": username, "role": role})
    return {"username": username, "role": role, "created_at": now, "created_by": actor}


async def delete_user(
    db: Database, bus: Callable[[], Bus], username: str, *, actor: str
) -> dict[str, Any]:
    """Delete a user; refused (409) for the last admin, who could not be replaced. Their
    tokens are void at once — also for a user of the same name created later."""
    now = system_clock()

    def remove(conn: Connection) -> str | None:
        user = users.get_user(conn, username)
        if user is None:
            return "missing"
        if _sole_admin(conn, user):
            return "last-admin"
        users.delete_user(conn, username)
        sessions.revoke_all(conn, username, now)
        return None

    problem = await db.write(remove)
    if problem == "missing":
        raise NotFound(f"user {username!r} not found", username=username)
    if problem == "last-admin":
        raise Conflict(f"{username!r} is the last admin; add another admin first")
    await publish_audit(bus, "user.delete", actor, {"username": username})
    return {"deleted": username}


def _sole_admin(conn: Connection, user: dict[str, Any]) -> bool:
    """Is ``user`` the only admin who can sign in (nobody could replace them)?"""
    active = user["role"] == "admin" and user.get("disabled_at") is None
    return active and users.count_admins(conn) <= 1


async def update_user(
    db: Database,
    bus: Callable[[], Bus],
    username: str,
    *,
    role: str | None = None,
    disabled: bool | None = None,
    password: str | None = None,
    actor: str,
) -> dict[str, Any]:
    """Change a user's role, disabled state or password (what is None stays). Refused
    (409) when it would leave no admin who can sign in. Disabling the user or resetting
    the password ends every session the user had. One audit record per change:
    ``user.role_set``, ``user.disable`` / ``user.enable``, ``user.password_reset``."""
    password_hash = None if password is None else await asyncio.to_thread(hash_password, password)
    now = system_clock()

    def change(conn: Connection) -> tuple[dict[str, Any] | None, list[tuple[str, dict[str, Any]]]]:
        user = users.get_user(conn, username)
        if user is None:
            return None, []
        values: dict[str, Any] = {}
        done: list[tuple[str, dict[str, Any]]] = []
        if role is not None and role != user["role"]:
            values["role"] = role
            done.append(("user.role_set", {"from": user["role"], "to": role}))
        was_disabled = user.get("disabled_at") is not None
        if disabled is not None and disabled != was_disabled:
            values.update(
                disabled_at=now if disabled else None, disabled_by=actor if disabled else None
            )
            done.append(("user.disable" if disabled else "user.enable", {}))
        if password_hash is not None:
            values["password_hash"] = password_hash
            done.append(("user.password_reset", {}))
        losing_admin = (values.get("role", user["role"]) != "admin") or bool(
            values.get("disabled_at", user.get("disabled_at"))
        )
        if losing_admin and _sole_admin(conn, user):
            raise Conflict(
                f"{username!r} is the last admin who can sign in; make another user admin first",
                username=username,
            )
        users.update_user(conn, username, values)
        if password_hash is not None or values.get("disabled_at") is not None:
            # A reset password or a disabled account answers a leaked credential or a
            # departure: the sessions opened before must not outlive it (nor come back
            # when the account is enabled again).
            sessions.revoke_all(conn, username, now)
        return users.public_user(conn, username), done

    updated, done = await db.write(change)
    if updated is None:
        raise NotFound(f"user {username!r} not found", username=username)
    for action, details in done:
        await publish_audit(bus, action, actor, {"username": username, **details})
    return updated


def _session_of(principal: Principal) -> tuple[str, Any]:
    if principal.via != "jwt" or principal.jti is None or principal.expires_at is None:
        raise Invalid(
            "only a session token (from `kanade login`) can be logged out; a static token "
            "is revoked by replacing it"
        )
    return principal.jti, principal.expires_at


async def logout(
    db: Database, bus: Callable[[], Bus], principal: Principal, *, everywhere: bool = False
) -> dict[str, Any]:
    """Void the presented session token, or (``everywhere``) every token of its user."""
    jti, expires_at = _session_of(principal)
    now = system_clock()

    def void(conn: Connection) -> None:
        sessions.prune_revoked(conn, now)
        if everywhere:
            sessions.revoke_all(conn, principal.actor, now)
        else:
            sessions.revoke_token(conn, jti=jti, username=principal.actor, expires_at=expires_at)

    await db.write(void)
    action = "user.logout_everywhere" if everywhere else "user.logout"
    await publish_audit(bus, action, principal.actor, {})
    return {"username": principal.actor, "everywhere": everywhere, "revoked_at": now}


async def revoke_sessions(
    db: Database, bus: Callable[[], Bus], username: str, *, actor: str
) -> dict[str, Any]:
    """An admin voids every session of ``username`` (a lost laptop, a departing person)."""
    now = system_clock()

    def void(conn: Connection) -> bool:
        if users.get_user(conn, username) is None:
            return False
        sessions.revoke_all(conn, username, now)
        return True

    if not await db.write(void):
        raise NotFound(f"user {username!r} not found", username=username)
    await publish_audit(bus, "user.sessions_revoke", actor, {"username": username})
    return {"username": username, "everywhere": True, "revoked_at": now}
