"""Responses of ``/api/keys`` (command-signing keys, admin only)."""

from __future__ import annotations

from kanade.backend.api.schemas.common import Schema


class SigningKeyInfo(Schema):
    kid: str
    created_at: str
    retire_at: str | None


class SigningKeys(Schema):
    active: str
    keys: list[SigningKeyInfo]


class KeysRotated(SigningKeys):
    previous: str
    resigned: int
