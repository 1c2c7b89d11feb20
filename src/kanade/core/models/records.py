"""Records the backend writes to its own streams and the control messages it broadcasts.

* :class:`ExecRecord` — ``kanade.exec.created.<exec_id>``: the whole ``executions`` row;
* :class:`ExecStatusRecord` — ``kanade.exec.<event>.<exec_id>``: an operator's decision
  (approved, rejected, cancelled), applied through the exec transition table;
* :class:`AuditRecord` — ``kanade.audit.<action>``: who did what;
* :class:`KillRequest` — ``kanade.ctl.kill`` (core NATS): end an exec's running scripts;
* :class:`Revocation` — the value of key ``<job_id>`` in KV ``kanade_revocations`` (agents
  only look at the key; the value tells people who revoked it, when and why).

KANADE_EXECS and KANADE_AUDIT are the durable truth the database is rebuilt from, so the
records carry every column a row needs. Readers are tolerant (:class:`WireModel`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, Field, StringConstraints

from kanade.core import msgids, subjects
from kanade.core.bounds import Instant, Name, Slug, Text, WireId
from kanade.core.instants import format_instant
from kanade.core.models.base import WireModel
from kanade.core.statuses import ExecStatus

ExecKind = Literal["job", "adhoc"]

MAX_EXPECTED: Final = 10_000_000
"""Expected pcs of one exec (a count on a record; the list itself is bounded by the
stream's message size)."""


def _known_status(value: str) -> str:
    if value not in ExecStatus.__members__.values():
        raise ValueError(f"not an exec status ({', '.join(s.value for s in ExecStatus)})")
    return value



class ExecRecord(WireModel):
    """``kanade.exec.created.<exec_id>``: one dispatch of a job to a target."""

    exec_id: WireId
    kind: ExecKind
    job_id: Slug
    version: Name
    target: dict[str, Any]
    expected_pcs: list[Slug] = Field(default_factory=list)
    expected_count: Annotated[int, Field(ge=0, le=MAX_EXPECTED)] = 0
    status: Annotated[str, AfterValidator(_known_status)] = ExecStatus.PENDING.value
    initiated_by: Text = "anonymous"
    schedule_id: Slug | None = None
    nominal_time: Instant | None = None
    created_at: Instant
    request_id: WireId
    # The job's inventory/check hints (as on the command): results of this exec are
    # projected into facts and check statuses with them, also when re-projecting.
    inventory_hint: dict[str, Any] | None = None
    check_hint: dict[str, Any] | None = None
    # The exec's deadline (SPEC §4.3): after it no pc starts its command, and an expected
    # pc that never did is closed as no_result. None while commands are still to be sent
    # (awaiting approval, a rollout); the approval or each wave sets it then.
    deadline_at: Instant | None = None

    def row(self) -> dict[str, Any]:
        """The ``executions`` columns this record sets (status only on first insert)."""
        return self.model_dump(mode="python")


class AuditRecord(WireModel):
    """``kanade.audit.<action>``: who did what. Never carries scripts, env or secrets."""

    action: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    actor: Annotated[str, StringConstraints(max_length=128)]
    at: Instant
    details: dict[str, Any] = Field(default_factory=dict)


STATUS_EVENTS: Final[dict[ExecStatus, str]] = {
    ExecStatus.PENDING: "approved",
    ExecStatus.REJECTED: "rejected",
    ExecStatus.CANCELLED: "cancelled",
}
"""The statuses an operator's decision sets, and the subject event that records each."""


class ExecStatusRecord(WireModel):
    """``kanade.exec.<event>.<exec_id>``: ``{"exec_id", "status", "at", "by"}``, and for an
    approval that sent the commands, their ``deadline_at`` (the exec's deadline)."""

    exec_id: WireId
    status: ExecStatus
    at: Instant | None = None
    by: Text | None = None
    deadline_at: Instant | None = None

    @property
    def event(self) -> str:
        """The subject's event token; ``KeyError`` for a status no decision sets."""
        return STATUS_EVENTS[self.status]

    def subject(self) -> str:
        return subjects.exec_subject(self.event, self.exec_id)

    def msg_id(self) -> str:
        return msgids.exec_status_msg_id(self.event, self.exec_id)

    def encode(self) -> bytes:
        """Compact JSON with sorted keys, ``at`` as ISO-8601 ``Z``."""
        body: dict[str, Any] = {"exec_id": self.exec_id, "status": self.status.value}
        if self.at is not None:
            body["at"] = format_instant(self.at)
        if self.by is not None:
            body["by"] = self.by
        if self.deadline_at is not None:
            body["deadline_at"] = format_instant(self.deadline_at)
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class KillRequest(WireModel):
    """``kanade.ctl.kill``: agents end the exec's running tree and skip its queued copies."""

    exec_id: WireId

    def encode(self) -> bytes:
        return json.dumps({"exec_id": self.exec_id}, separators=(",", ":")).encode()


class Revocation(WireModel):
    revoked_at: Instant
    by: Text
    reason: Text = ""

    def fields(self) -> dict[str, str]:
        """The record as stored and shown: ``revoked_at`` as ISO-8601 ``Z``."""
        return {"revoked_at": format_instant(self.revoked_at), "by": self.by, "reason": self.reason}

    def encode(self) -> bytes:
        return json.dumps(self.fields(), sort_keys=True, separators=(",", ":")).encode()


__all__ = [
    "STATUS_EVENTS",
    "AuditRecord",
    "ExecKind",
    "ExecRecord",
    "ExecStatusRecord",
    "KillRequest",
    "Revocation",
]
