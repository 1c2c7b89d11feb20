"""Session tokens (kanade.backend.services.auth.tokens): HS256 JWTs, expiry, ids, the
bounded lifetime, secret rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from kanade.backend.services.auth import tokens

SECRET = "s" * 40
NOW = datetime.now(UTC)


def test_jwt_round_trip() -> None:
    issued = tokens.issue(SECRET, "alice", "operator", now=NOW, ttl=timedelta(hours=1))
    claims = tokens.verify(SECRET, issued.token)
    assert (claims.username, claims.jti) == ("alice", issued.jti)
    assert claims.issued_at == NOW  # sub-second: "log out everywhere" cuts exactly
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


def test_every_token_has_its_own_id() -> None:
    ids = {tokens.issue(SECRET, "alice", "viewer", now=NOW, ttl=timedelta(hours=1)).jti
           for _ in range(50)}
    assert len(ids) == 50


@pytest.mark.parametrize("ttl", [timedelta(days=8), timedelta(days=36500), timedelta(seconds=5)])
def test_lifetime_outside_bounds_is_not_issued(ttl: timedelta) -> None:
    with pytest.raises(ValueError, match="token lifetime"):
        tokens.issue(SECRET, "alice", "viewer", now=NOW, ttl=ttl)


def test_token_claiming_a_longer_life_is_refused_whoever_signed_it() -> None:
    # Signed with the real secret (an older backend, or a leaked secret) but living a year.
    iat = int(NOW.timestamp())
    year = jwt.encode(
        {"sub": "alice", "iss": "kanade", "iat": iat, "exp": iat + 365 * 86400},
        SECRET,
        "HS256",
    )
    with pytest.raises(tokens.TokenInvalid, match="lifetime exceeds 7 days"):
        tokens.verify(SECRET, year)
    # A token from before ids existed (no jti) still verifies: it has no id to revoke.
    old = jwt.encode({"sub": "alice", "iss": "kanade", "iat": iat, "exp": iat + 3600}, SECRET)
    assert tokens.verify(SECRET, old).jti is None
