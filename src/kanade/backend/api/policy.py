"""The role table: which role a request needs, from its method and path alone.

Decided before routing, so every route is covered the moment it exists. The table (first
match wins) and why ``/metrics`` and the dashboard files are public:
docs/backend-auth-audit.md, "The role table".
"""

from __future__ import annotations

from typing import Final, Literal

Role = Literal["viewer", "operator", "admin"]
ROLES: Final[tuple[Role, ...]] = ("viewer", "operator", "admin")
RANK: Final[dict[str, int]] = {"viewer": 1, "operator": 2, "admin": 3}

READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
MUTATING_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_PUBLIC_PATHS: Final = frozenset({"/health", "/metrics", "/api/auth/login"})
# The enrolment token in the body is the credential (services/enrolment.py).
_PUBLIC_POSTS: Final = frozenset({"/api/enroll"})
_PUBLIC_READS: Final = ("/api/openapi.json", "/api/docs")
# Any authenticated caller may end its own session(s).
_SELF_POSTS: Final = frozenset({"/api/auth/logout"})
_ADMIN_PREFIXES: Final = (
    "/api/users",
    "/api/settings",
    "/api/agents/enroll-tokens",
    "/api/agents/enrolled",
    "/api/keys",
    "/api/agent-releases",
)

# Readable by every role, changed only by admins: webhook secrets and where the fleet's
# failures are announced are an admin's business (docs/notifications.md).
_ADMIN_WRITE_PREFIXES: Final = ("/api/notify",)


def _admin_path(path: str) -> bool:
    if any(_under(path, p) for p in _ADMIN_PREFIXES):
        return True
    # /api/agents/<pc>/revoke: revoking an agent's identity
    parts = path.split("/")
    return len(parts) == 5 and parts[1:3] == ["api", "agents"] and parts[4] == "revoke"


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def required_role(method: str, path: str) -> Role | None:
    """The least role allowed to make this request; None = public."""
    method = method.upper()
    path = path.rstrip("/") or "/"
    if path in _PUBLIC_PATHS or (method == "POST" and path in _PUBLIC_POSTS):
        return None
    if method in READ_METHODS and any(_under(path, p) for p in _PUBLIC_READS):
        return None
    if method == "POST" and path in _SELF_POSTS:
        return "viewer"
    if _admin_path(path):
        return "admin"
    if method not in READ_METHODS and any(_under(path, p) for p in _ADMIN_WRITE_PREFIXES):
        return "admin"
    if _under(path, "/api"):
        return "viewer" if method in READ_METHODS else "operator"
    return None if method in READ_METHODS else "operator"


def allows(role: str, needed: Role) -> bool:
    return RANK.get(role, 0) >= RANK[needed]
