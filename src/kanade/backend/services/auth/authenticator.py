"""Who is calling: the request's credentials → a :class:`Principal`, per auth mode.

* ``disabled``: everyone is ``anonymous`` with every right (development, ``kanade up``);
* ``token``: one static bearer token (``--auth-token-file`` or ``$KANADE_AUTH_TOKEN``),
  acting as ``token``, role admin;
* ``jwt``: users in the database log in for an HS256 token; the static token, when
  also configured, still works (automation, break-glass).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.engine import Connection

from kanade.backend.services.auth import tokens
from kanade.backend.services.auth.ratelimit import LoginLimiter
from kanade.backend.store.database import Database
from kanade.backend.store.sessions import is_revoked
from kanade.backend.store.users import get_user

AuthMode = Literal["disabled", "token", "jwt"]
AUTH_MODES: tuple[AuthMode, ...] = ("disabled", "token", "jwt")

DEFAULT_TOKEN_TTL = timedelta(hours=12)


@dataclass(frozen=True)
class Principal:
    actor: str
    role: str
    via: Literal["disabled", "public", "token", "jwt"]
    # A session token's id and end (via == "jwt"): what logging out revokes.
    jti: str | None = None
    expires_at: datetime | None = None


ANONYMOUS = Principal("anonymous", "admin", "disabled")
PUBLIC = Principal("anonymous", "", "public")


class Unauthenticated(Exception):
    """401: no usable credentials (the message says what to do)."""


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class Authenticator:
    def __init__(
        self,
        mode: AuthMode,
        db: Database,
        *,
        static_token: str | None = None,
        jwt_secret: str | None = None,
        token_ttl: timedelta = DEFAULT_TOKEN_TTL,
        limiter: LoginLimiter | None = None,
    ) -> None:
        problem = tokens.ttl_problem(token_ttl)
        if problem:
            raise ValueError(problem)
        self.mode = mode
        self._db = db
        self._static = static_token or None
        self.jwt_secret = jwt_secret
        self.token_ttl = token_ttl
        self.limiter = limiter or LoginLimiter()

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    async def authenticate(self, token: str | None) -> Principal:
        """The caller behind ``token``; raises :class:`Unauthenticated`."""
        if self.mode == "disabled":
            return ANONYMOUS
        if token is None:
            raise Unauthenticated(
                "authentication required: send 'Authorization: Bearer <token>' "
                "(log in with `kanade login`)"
            )
        if self._static is not None and hmac.compare_digest(token.encode(), self._static.encode()):
            return Principal("token", "admin", "token")
        if self.mode == "token" or self.jwt_secret is None:
            raise Unauthenticated("invalid token")
        try:
            claims = tokens.verify(self.jwt_secret, token)
        except tokens.TokenInvalid as exc:
            raise Unauthenticated(str(exc)) from None

        def look_up(conn: Connection) -> tuple[dict[str, Any] | None, bool]:
            user = get_user(conn, claims.username)
            revoked = user is not None and is_revoked(
                conn, jti=claims.jti, username=claims.username, issued_at=claims.issued_at
            )
            return user, revoked

        user, revoked = await self._db.read(look_up)
        if user is None:
            raise Unauthenticated(f"user {claims.username!r} no longer exists")
        if revoked:
            raise Unauthenticated("this session was logged out; log in again")
        return Principal(
            claims.username, str(user["role"]), "jwt", claims.jti, claims.expires_at
        )
