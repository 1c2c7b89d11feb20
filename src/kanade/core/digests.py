"""Script digests: one spelling of "the sha256 of a script" across backend, agent and CLI."""

from __future__ import annotations

import base64
import hashlib


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_hex_from_nats_digest(digest: str) -> str:
    """Object-store digests are ``SHA-256=<base64url>``; commands carry lowercase hex."""
    raw = digest.split("=", 1)[1] if "=" in digest else digest
    raw += "=" * (-len(raw) % 4)
    return base64.urlsafe_b64decode(raw).hex()
