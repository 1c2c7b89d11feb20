"""Responses of enrolment and agent revocation (SPEC §8.1)."""

from __future__ import annotations

from typing import Any, Literal

from kanade.backend.api.schemas.common import Instant, Schema


class TokenCreated(Schema):
    token: str
    """The secret, shown this once: only its sha256 is kept."""
    token_id: str
    groups: list[str]
    expires_at: Instant


class Token(Schema):
    token_id: str
    groups: list[str]
    created_by: str
    created_at: Instant
    expires_at: Instant
    used_at: Instant | None
    used_by_pc: str | None
    cancelled: bool


class TokenCancelled(Token):
    was_open: bool


class TokenList(Schema):
    items: list[Token]
    total: int


class Grant(Schema):
    """What an enrolling agent stores in its trust dir."""

    pc_id: str
    user_jwt: str
    ca_pem: str
    nats_urls: list[str]
    signing_keys: list[dict[str, Any]]


class EnrolledAgent(Schema):
    pc_id: str
    public_key: str
    enrolled_at: Instant
    token_id: str
    status: Literal["active", "revoked"]
    revoked_at: Instant | None
    revoked_by: str | None


class AgentRevoked(EnrolledAgent):
    was_revoked: bool
    consumer_deleted: bool


class EnrolledList(Schema):
    items: list[EnrolledAgent]
    total: int
