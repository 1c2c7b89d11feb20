"""The enrolment exchange (SPEC §8.1): what ``kanade-agent enroll`` sends to
``POST /api/enroll`` and what it gets back.

The agent generates its nkey pair itself and sends only the public key; the grant is what
it stores in its trust dir (docs/enrolment.md).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from kanade.core.models.base import WireModel


class EnrolRequest(WireModel):
    token: str
    pc_id: str
    public_key: str
    """The nkey user public key (``U…``); the seed never leaves the machine."""


class EnrolGrant(WireModel):
    pc_id: str
    user_jwt: str
    """The broker credential's JWT; with the local seed it makes ``agent.creds``."""
    ca_pem: str
    """The CA the broker's certificate is checked against."""
    nats_urls: list[str] = Field(min_length=1)
    signing_keys: list[dict[str, Any]] = Field(default_factory=list)
    """The backend's command-signing public keys (``keyring.json`` ``keys``)."""
