"""Uploading a job to the catalog, audited as ``job.create`` or ``job.update``."""

from __future__ import annotations

from collections.abc import Callable

from kanade.backend.catalog.jobs import JobCatalog
from kanade.backend.messaging.audit import publish_audit
from kanade.bus.connection import Bus
from kanade.core.models.job import JobManifest


async def upload_job(bus: Callable[[], Bus], job: JobManifest, *, actor: str) -> bool:
    """Store ``job``; True if it was new or changed. An identical re-upload is recorded
    too (``job.update`` with ``changed: false``): someone asked for it."""
    done = await JobCatalog(bus()).upload(job)
    await publish_audit(
        bus,
        "job.create" if done.created else "job.update",
        actor,
        {"job_id": job.id, "version": job.version, "changed": done.changed},
    )
    return done.changed
