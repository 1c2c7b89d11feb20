"""The signature of a generic webhook's request: HMAC-SHA256 over ``<timestamp>.<body>``.

The receiver recomputes it with the shared secret and compares in constant time; the
timestamp is inside what is signed, so an old request replayed later is told apart by its
age (the receiver picks the tolerance). How to verify, with code: docs/notifications.md.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

SIGNATURE_HEADER: Final = "X-Kanade-Signature"
TIMESTAMP_HEADER: Final = "X-Kanade-Timestamp"
PREFIX: Final = "sha256="


def signed_bytes(timestamp: int, body: bytes) -> bytes:
    return str(timestamp).encode() + b"." + body


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Kanade-Signature`` value: ``sha256=<hex>``."""
    mac = hmac.new(secret.encode(), signed_bytes(timestamp, body), hashlib.sha256)
    return PREFIX + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float,
    tolerance_s: float = 300.0,
) -> bool:
    """True when ``signature`` is ``body``'s at ``timestamp`` and the timestamp is within
    ``tolerance_s`` of ``now`` (Unix seconds): what a receiver checks."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)
