"""Signed session tokens: HS256 JWTs carrying the username (``sub``), the role, an id
(``jti``, what logging out revokes) and a bounded lifetime.

The role in the token is informational (the CLI shows it); the middleware looks the
user up on every request, so deleting a user or changing a role takes effect at
once rather than when the token expires. ``iat`` has sub-second precision so "log out
everywhere" voids every earlier token and none issued after it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import jwt

from kanade.core.durations import format_duration

ALGORITHM = "HS256"
ISSUER = "kanade"
# PyJWT warns below this for HS256 (RFC 7518 §3.2): refuse weak secrets at start-up.
MIN_SECRET_BYTES = 32
MAX_TTL: Final = timedelta(days=7)
"""The longest a session token may live (``--token-ttl``); a token claiming a longer life
is refused whoever signed it."""
MIN_TTL: Final = timedelta(minutes=1)


class TokenInvalid(Exception):
    """Why a presented token is refused (the message goes into the 401 body)."""


@dataclass(frozen=True)
class Issued:
    token: str
    expires_at: datetime
    jti: str


@dataclass(frozen=True)
class Claims:
    """What a valid token says: whose it is, its id, and when it was issued / expires."""

    username: str
    jti: str | None
    issued_at: datetime
    expires_at: datetime


def ttl_problem(ttl: timedelta) -> str | None:
    if not MIN_TTL <= ttl <= MAX_TTL:
        return (
            f"the token lifetime must be between {format_duration(MIN_TTL)} and "
            f"{format_duration(MAX_TTL)} (got {format_duration(abs(ttl))})"
        )
    return None


def issue(secret: str, username: str, role: str, *, now: datetime, ttl: timedelta) -> Issued:
    problem = ttl_problem(ttl)
    if problem:
        raise ValueError(problem)
    expires = now + ttl
    jti = secrets.token_hex(16)
    claims: dict[str, Any] = {
        "sub": username,
        "role": role,
        "iss": ISSUER,
        "jti": jti,
        "iat": now.timestamp(),
        "exp": int(expires.timestamp()),
    }
    token = jwt.encode(claims, secret, algorithm=ALGORITHM)
    return Issued(token, datetime.fromtimestamp(claims["exp"], UTC), jti)


def verify(secret: str, token: str) -> Claims:
    """The claims of a valid, unexpired token signed with ``secret`` and living no longer
    than :data:`MAX_TTL`."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],  # never trust the header's alg (no "none", no RS/HS mixup)
            issuer=ISSUER,
            options={"require": ["sub", "exp", "iat", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenInvalid("token expired; log in again") from None
    except jwt.InvalidTokenError:
        raise TokenInvalid("invalid token") from None
    sub, jti, iat, exp = claims.get("sub"), claims.get("jti"), claims["iat"], claims["exp"]
    if not isinstance(sub, str) or not sub or not (jti is None or isinstance(jti, str)):
        raise TokenInvalid("invalid token")
    try:
        issued_at = datetime.fromtimestamp(float(iat), UTC)
        expires_at = datetime.fromtimestamp(float(exp), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise TokenInvalid("invalid token") from None
    if expires_at - issued_at > MAX_TTL + timedelta(seconds=1):
        raise TokenInvalid(f"token lifetime exceeds {MAX_TTL.days} days; log in again")
    return Claims(sub, jti, issued_at, expires_at)


def secret_problem(secret: str | None) -> str | None:
    if not secret:
        return "jwt mode needs a signing secret (--jwt-secret-file or $KANADE_JWT_SECRET)"
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes"
    return None
