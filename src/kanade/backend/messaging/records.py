"""Records the backend writes to its own streams (KANADE_EXECS, KANADE_AUDIT).

They are the durable truth the SQL ``executions`` table is rebuilt from, so
they carry every column the row needs. Readers are tolerant (``WireModel``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from kanade.backend.messaging.audit_mark import mark_audited
from kanade.core.models.base import WireModel

ExecKind = Literal["job", "adhoc"]


class ExecRecord(WireModel):
    """``kanade.exec.created.<exec_id>``: one dispatch of a job to a target."""

    exec_id: str
    kind: ExecKind
    job_id: str
    version: str
    target: dict[str, Any]
    expected_pcs: list[str] = Field(default_factory=list)
    expected_count: int = 0
    status: str = "pending"
    initiated_by: str = "anonymous"
    schedule_id: str | None = None
    nominal_time: datetime | None = None
    created_at: datetime
    request_id: str
    # The job's inventory/check hints (as on the command): results of this exec are
    # projected into facts and check statuses with them, also when re-projecting.
    inventory_hint: dict[str, Any] | None = None
    check_hint: dict[str, Any] | None = None

    def row(self) -> dict[str, Any]:
        """The ``executions`` columns this record sets (status only on first insert)."""
        return self.model_dump(mode="python")


class AuditRecord(WireModel):
    """``kanade.audit.<action>``: who did what. Never carries scripts, env or secrets."""

    action: str
    actor: str
    at: datetime
    details: dict[str, Any] = Field(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        # A request that builds its own record is audited: the audit middleware then
        # skips its generic one (kanade.backend.api.middleware.audit), whoever wrote the route.
        mark_audited()
