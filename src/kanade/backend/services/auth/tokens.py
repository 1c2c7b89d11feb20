"""Signed session tokens: HS256 JWTs carrying the username (``sub``) and role.

The role in the token is informational (the CLI shows it); the middleware looks the
user up on every request, so deleting a user or changing a role takes effect at
once rather than when the token expires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

ALGORITHM = "HS256"
ISSUER = "kanade"
# PyJWT warns below this for HS256 (RFC 7518 §3.2): refuse weak secrets at start-up.
MIN_SECRET_BYTES = 32


class TokenInvalid(Exception):
    """Why a presented token is refused (the message goes into the 401 body)."""


@dataclass(frozen=True)
class Issued:
    token: str
    expires_at: datetime


def issue(secret: str, username: str, role: str, *, now: datetime, ttl: timedelta) -> Issued:
    expires = now + ttl
    claims: dict[str, Any] = {
        "sub": username,
        "role": role,
        "iss": ISSUER,
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
    }
    token = jwt.encode(claims, secret, algorithm=ALGORITHM)
    return Issued(token, datetime.fromtimestamp(claims["exp"], UTC))


def verify(secret: str, token: str) -> str:
    """The username in a valid, unexpired token signed with ``secret``."""
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
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise TokenInvalid("invalid token")
    return sub


def secret_problem(secret: str | None) -> str | None:
    if not secret:
        return "jwt mode needs a signing secret (--jwt-secret-file or $KANADE_JWT_SECRET)"
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes"
    return None
