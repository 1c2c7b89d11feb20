"""Role table, JWTs and password hashes (the CLI's credentials file: tests/unit/cli)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from kanade.backend.api.policy import allows, required_role
from kanade.backend.services.auth import tokens
from kanade.backend.services.auth.passwords import hash_password, verify_password

SECRET = "s" * 40


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/health", None),
        ("GET", "/metrics", None),
        ("POST", "/api/auth/login", None),
        ("GET", "/api/openapi.json", None),
        ("GET", "/api/docs", None),
        ("GET", "/", None),
        ("GET", "/ui/app.js", None),
        ("POST", "/ui/app.js", "operator"),
        ("GET", "/api/auth/me", "viewer"),
        ("GET", "/api/executions", "viewer"),
        ("HEAD", "/api/agents", "viewer"),
        ("POST", "/api/exec/hello", "operator"),
        ("PUT", "/api/freeze", "operator"),
        ("DELETE", "/api/freeze", "operator"),
        ("PATCH", "/api/anything/new", "operator"),
        ("GET", "/api/users", "admin"),
        ("POST", "/api/users", "admin"),
        ("DELETE", "/api/users/bob", "admin"),
        ("PUT", "/api/settings/x", "admin"),
        ("GET", "/api/usersx", "viewer"),  # a prefix match is per path segment
        ("GET", "/api/", "viewer"),
        ("POST", "/api/auth/login/", None),
    ],
)
def test_role_table(method: str, path: str, role: str | None) -> None:
    assert required_role(method, path) == role


def test_role_order() -> None:
    assert allows("admin", "operator") and allows("operator", "operator")
    assert not allows("viewer", "operator") and not allows("", "viewer")
    assert not allows("root", "viewer")  # an unknown role has no rights


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


def test_password_hashes() -> None:
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$") and "correct" not in h
    assert verify_password(h, "correct horse")
    assert not verify_password(h, "wrong horse")
    assert not verify_password(None, "kanade-no-such-user")  # unknown user never matches
    assert not verify_password("garbage", "x")
