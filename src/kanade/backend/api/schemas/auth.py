"""Responses of ``/api/auth`` and ``/api/users``."""

from __future__ import annotations

from kanade.backend.api.schemas.common import Instant, Schema


class LoginResult(Schema):
    token: str
    expires_at: Instant
    username: str
    role: str


class Me(Schema):
    actor: str
    role: str
    auth: str


class User(Schema):
    username: str
    role: str
    created_at: Instant
    created_by: str


class UserPage(Schema):
    items: list[User]
    total: int
    limit: int
    offset: int


class UserDeleted(Schema):
    deleted: str


class LoggedOut(Schema):
    """Sessions voided: the presented one, or every one of ``username`` (``everywhere``)."""

    username: str
    everywhere: bool
    revoked_at: Instant
