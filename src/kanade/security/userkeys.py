"""Checking an nkey *user* public key (``U…``) sent by an enrolling agent (SPEC §8.1).

nkeys 0.2 decodes seeds but has no public-key decoder: this is the same encoding read
back — base32 of prefix byte + 32-byte Ed25519 key + CRC16 (little endian).
Imported by the backend (to validate) and the agent (nothing here needs cryptography).
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

import nkeys

__all__ = ["USER_KEY_RULE", "user_key_problem"]

_LENGTH: Final = 56  # base32 characters of 35 bytes, without padding
USER_KEY_RULE: Final = "must be an nkey user public key: 56 base32 characters starting with 'U'"


def user_key_problem(text: str) -> str | None:
    """None when ``text`` is a well-formed user public key, else why not."""
    if not isinstance(text, str) or len(text) != _LENGTH or not text.startswith("U"):
        return USER_KEY_RULE
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        return f"{USER_KEY_RULE} (not base32)"
    body, checksum = raw[:-2], raw[-2:]
    if body[0] != nkeys.PREFIX_BYTE_USER or len(body) != 33:
        return USER_KEY_RULE
    if nkeys.crc16_checksum(body) != checksum:
        return f"{USER_KEY_RULE} (bad checksum)"
    return None
