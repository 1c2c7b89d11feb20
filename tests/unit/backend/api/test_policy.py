"""The role table (kanade.backend.api.policy): which role each method and path needs."""

from __future__ import annotations

import pytest

from kanade.backend.api.policy import allows, required_role


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
        ("GET", "/api/keys", "admin"),
        ("POST", "/api/keys/rotate", "admin"),
        ("GET", "/api/usersx", "viewer"),  # a prefix match is per path segment
        ("GET", "/api/", "viewer"),
        ("POST", "/api/auth/login/", None),
        # enrolment (SPEC §8.1): the token is the credential; the rest is admin-only
        ("POST", "/api/enroll", None),
        ("GET", "/api/enroll", "viewer"),
        ("POST", "/api/agents/enroll-tokens", "admin"),
        ("GET", "/api/agents/enroll-tokens", "admin"),
        ("DELETE", "/api/agents/enroll-tokens/abc", "admin"),
        ("GET", "/api/agents/enrolled", "admin"),
        ("POST", "/api/agents/pc-1/revoke", "admin"),
        ("POST", "/api/agents/pc-1/ping", "operator"),
        ("GET", "/api/agents/pc-1", "viewer"),
        # agent releases (SPEC §3.8): publishing runs code on every machine: admin only
        ("POST", "/api/agent-releases", "admin"),
        ("GET", "/api/agent-releases", "admin"),
        ("GET", "/api/agent-versions", "viewer"),
        # notifications: everyone reads the status, admins change webhooks
        ("GET", "/api/notify/webhooks", "viewer"),
        ("GET", "/api/notify/deliveries", "viewer"),
        ("POST", "/api/notify/webhooks", "admin"),
        ("PATCH", "/api/notify/webhooks/ops", "admin"),
        ("DELETE", "/api/notify/webhooks/ops", "admin"),
        ("POST", "/api/notify/webhooks/ops/test", "admin"),
        ("POST", "/api/notify/deliveries/d1/retry", "admin"),
        ("POST", "/api/notifyx", "operator"),
    ],
)
def test_role_table(method: str, path: str, role: str | None) -> None:
    assert required_role(method, path) == role


def test_role_order() -> None:
    assert allows("admin", "operator") and allows("operator", "operator")
    assert not allows("viewer", "operator") and not allows("", "viewer")
    assert not allows("root", "viewer")  # an unknown role has no rights

