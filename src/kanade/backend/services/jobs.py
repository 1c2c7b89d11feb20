"""Storing a job (SPEC §2.1, §4.8): the catalog write, and the rule that only an admin may
remove a job's approval requirement — audited when one does."""

from __future__ import annotations

from collections.abc import Callable

from kanade.backend.catalog.jobs import JobCatalog
from kanade.backend.messaging.audit import publish_audit
from kanade.bus.connection import Bus
from kanade.core.models.job import JobManifest


async def put_job(
    bus: Callable[[], Bus], job: JobManifest, *, actor: str, is_admin: bool
) -> bool:
    """Store ``job`` (True: new or changed). Lowering ``require_approval`` of the stored
    version is :class:`~kanade.backend.errors.Forbidden` unless ``is_admin``; when an
    admin does it, a ``job_approval_lowered`` audit record says who, from which version."""
    stored = await JobCatalog(bus()).put(job, may_lower_approval=is_admin)
    if stored.lowered_from is not None:
        await publish_audit(
            bus,
            "job_approval_lowered",
            actor,
            {"job_id": job.id, "from_version": stored.lowered_from, "version": job.version},
        )
    return stored.changed
