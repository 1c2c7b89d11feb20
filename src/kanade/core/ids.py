"""Identifiers: the slug grammar shared by jobs, groups and pcs, and id minting.

Ids travel inside NATS subjects (one token each), so they may not contain dots,
spaces, wildcards or ``>``; the slug grammar guarantees that.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Final

SLUG_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
SLUG_RULE: Final = (
    "must be 1-128 characters of letters, digits, '-' and '_', starting with a letter or digit"
)


def is_slug(value: str) -> bool:
    # fullmatch: with match, "$" also matches before a final newline ("pc\n" is no slug:
    # ids become subject tokens, and a newline breaks the NATS protocol line).
    return bool(SLUG_RE.fullmatch(value))


def slugify_hostname(hostname: str) -> str:
    """Turn a hostname into a valid pc_id: the short name, with anything else replaced by '-'."""
    short = hostname.split(".", 1)[0] or "localhost"
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "-", short).strip("-_") or "localhost"
    return cleaned[:128]


def new_id() -> str:
    """A fresh random id (32 hex chars), for exec_id and request_id."""
    return uuid.uuid4().hex


def result_id_for(request_id: str, pc_id: str) -> str:
    """The result id of one command on one pc.

    Deterministic, so an agent that re-sends a result after a crash re-sends the
    *same* id and the backend's UPSERT keeps one row (SPEC §2.5, §4.2).
    """
    return hashlib.sha256(f"{request_id}\x00{pc_id}".encode()).hexdigest()[:32]


NO_RESULT_ID_PREFIX: Final = "nr-"
"""Every :func:`no_result_id` starts with it; a result id an agent mints never does."""


def no_result_id(exec_id: str, pc_id: str) -> str:
    """The id of the ``no_result`` row closing an expected pc that never started an exec
    (SPEC §4.3). Its own prefix, so it can never equal a real result id; deterministic, so
    a real result of that pc (whatever its request) finds and replaces it."""
    digest = hashlib.sha256(f"no_result\x00{exec_id}\x00{pc_id}".encode()).hexdigest()[:32]
    return f"{NO_RESULT_ID_PREFIX}{digest}"
