"""Operator-state documents in KV bucket ``kanade_state`` (SPEC §1.3).

The database holds some rows no stream carries: users, approvals, unattended-run
approvals, rollouts with their waves, the central scheduler's counters and recent
decisions, enrolled agents and enrolment tokens, notification webhooks. Each such row (or
aggregate: a rollout and its waves) is mirrored as one :class:`StateDoc`, so a wiped
database is rebuilt from the bucket. Which rows a document holds and how they are read back
is the backend store's (``backend/store/state_docs.py``); this module is the value's shape,
its key and the one ordering rule. Why and how: docs/backend.md, "A wiped database comes
back whole".
"""

from __future__ import annotations

import base64
import json
from typing import Any, Final, Literal

from pydantic import Field

from kanade.core.models.base import WireModel

StateKind = Literal[
    "user", "approval", "unattended", "rollout", "schedule", "enrolled", "enroll_token",
    "webhook",
]
STATE_KINDS: Final[tuple[str, ...]] = (
    "user", "approval", "unattended", "rollout", "schedule", "enrolled", "enroll_token",
    "webhook",
)


def state_key(kind: str, ref: tuple[str, ...] | list[str]) -> str:
    """The KV key of one document: ``<kind>.<part>…``, each part base64url (no padding),
    so any username, exec id or job version is a valid key token."""
    if kind not in STATE_KINDS:
        raise ValueError(f"unknown state kind {kind!r}")
    if not ref:
        raise ValueError("a state document needs a key")
    parts = [base64.urlsafe_b64encode(p.encode()).decode().rstrip("=") or "_" for p in ref]
    return ".".join([kind, *parts])


class StateDoc(WireModel):
    """One document: the rows of one key (``rows``: table name → rows, JSON values), or a
    tombstone (``deleted``: the row was removed, e.g. a deleted user).

    ``(gen, seq)`` orders documents of one key across writers and across databases: ``seq``
    grows with every change a database records, ``gen`` with every database rebuilt from
    the bucket. A writer replaces a document only with a newer one (:meth:`newer_than`).
    """

    kind: StateKind
    ref: list[str]
    gen: int = Field(ge=0)
    seq: int = Field(ge=0)
    deleted: bool = False
    rows: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return state_key(self.kind, self.ref)

    @property
    def order(self) -> tuple[int, int]:
        return (self.gen, self.seq)

    def newer_than(self, other: StateDoc | None) -> bool:
        return other is None or self.order > other.order

    def encode(self) -> bytes:
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
        ).encode()


__all__ = ["STATE_KINDS", "StateDoc", "StateKind", "state_key"]
