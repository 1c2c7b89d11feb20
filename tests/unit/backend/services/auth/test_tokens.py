"""Session tokens (kanade.backend.services.auth.tokens): HS256 JWTs, expiry, secret rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from kanade.backend.services.auth import tokens

SECRET = "s" * 40
NOW = datetime.now(UTC)


def test_jwt_round_trip() -> None:
    issued = tokens.issue(SECRET, "alice", "operator", now=NOW, ttl=timedelta(hours=1))
    assert tokens.verify(SECRET, issued.token) == "alice"
    assert issued.expires_at == datetime.fromtimestamp(
        int((NOW + timedelta(hours=1)).timestamp()), UTC
    )


def test_expired_tampered_and_foreign_tokens_are_refused() -> None:
    old = tokens.issue(
        SECRET, "alice", "admin", now=NOW - timedelta(hours=2), ttl=timedelta(hours=1)
    )
    with pytest.raises(tokens.TokenInvalid, match="expired"):
        tokens.verify(SECRET, old.token)
    good = tokens.issue(SECRET, "alice", "viewer", now=NOW, ttl=timedelta(hours=1)).token
    head, _payload, sig = good.split(".")
    forged_payload = jwt.utils.base64url_encode(
        b'{"sub":"alice","role":"admin","iss":"kanade","iat":1,"exp":9999999999}'
    ).decode()
    for bad in (
        f"{head}.{forged_payload}.{sig}",  # payload changed, signature kept
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),  # signature changed
        tokens.issue("x" * 40, "alice", "admin", now=NOW, ttl=timedelta(hours=1)).token,
        jwt.encode({"sub": "alice", "iss": "kanade", "iat": 1, "exp": 9999999999}, None, "none"),
        "not-a-jwt",
    ):
        with pytest.raises(tokens.TokenInvalid):
            tokens.verify(SECRET, bad)


def test_secret_rules() -> None:
    assert tokens.secret_problem(None) and tokens.secret_problem("short")
    assert tokens.secret_problem(SECRET) is None
