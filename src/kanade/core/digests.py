"""Digests: one spelling of "the sha256 of a script" across backend, agent and CLI, and the
hash of a set of digests behind the schedule-set version (SPEC §3.6, §2.7).

Only :mod:`hashlib` and :mod:`base64`: the agent reports the version of its (often empty)
schedule set without loading the scheduling core
(:func:`kanade.core.scheduling.schedule_set_version` builds on :func:`digest_set_version`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from typing import Final

SET_VERSION_PREFIX: Final = "v1:"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_hex_from_nats_digest(digest: str) -> str:
    """Object-store digests are ``SHA-256=<base64url>``; commands carry lowercase hex."""
    raw = digest.split("=", 1)[1] if "=" in digest else digest
    raw += "=" * (-len(raw) % 4)
    return base64.urlsafe_b64decode(raw).hex()


def digest_set_version(digests: Iterable[str]) -> str:
    """``v1:<32 hex>`` for a multiset of hex digests, in any order (duplicates count)."""
    body = "\n".join(sorted(digests))
    return SET_VERSION_PREFIX + hashlib.sha256(body.encode()).hexdigest()[:32]


EMPTY_SET_VERSION: Final = digest_set_version(())
"""The version of an empty schedule set: what an agent with no ``runs_on: agent`` schedule
reports."""
