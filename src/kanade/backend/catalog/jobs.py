"""The job catalog: manifests in the KV bucket ``kanade_jobs`` (key = job id).

The catalog lives in KV, not SQL, so agents can watch it directly and the SQL
database stays a pure projection of the streams.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from kanade.backend.errors import Conflict, Corrupt, NotFound
from kanade.bus.connection import Bus
from kanade.bus.kvsnapshot import kv_snapshot
from kanade.core import subjects
from kanade.core.ids import is_slug
from kanade.core.models.job import JobManifest
from kanade.core.validation import parse_job

log = structlog.get_logger(__name__)


def job_document(job: JobManifest) -> dict[str, Any]:
    """The canonical JSON form of a manifest (durations in the human grammar)."""
    return job.model_dump(mode="json", by_alias=True, exclude_none=True)


def _encode(job: JobManifest) -> bytes:
    return json.dumps(job_document(job), sort_keys=True, separators=(",", ":")).encode()


class JobCatalog:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def get(self, job_id: str) -> JobManifest | None:
        job, _ = await self._get_with_revision(job_id)
        return job

    async def _get_with_revision(self, job_id: str) -> tuple[JobManifest | None, int | None]:
        if not is_slug(job_id):
            return None, None  # cannot be a stored id (and is not a valid KV key)
        kv = await self._bus.kv(subjects.KV_JOBS)
        try:
            entry = await kv.get(job_id)
        except KeyNotFoundError:
            return None, None
        if entry.value is None:
            return None, entry.revision
        # Tolerant read: a manifest stored by a newer backend may carry fields we
        # do not know yet; they are dropped, not rejected.
        try:
            return parse_job(json.loads(entry.value), strict=False), entry.revision
        except ValueError as exc:  # DocumentInvalid and JSONDecodeError are ValueErrors
            raise Corrupt(
                f"the stored job {job_id!r} cannot be read: {exc}; upload it again",
                job_id=job_id,
            ) from None

    async def require(self, job_id: str) -> JobManifest:
        job = await self.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id!r} not found", job_id=job_id)
        return job

    async def list(self) -> list[JobManifest]:
        keys = set(await kv_snapshot(self._bus.js, subjects.KV_JOBS))
        jobs: list[JobManifest] = []
        for key in sorted(keys):
            try:
                job = await self.get(key)
            except Corrupt as exc:  # a damaged entry must not hide the others
                log.warning("unreadable job in catalog", job_id=key, error=str(exc))
                continue
            if job is not None:
                jobs.append(job)
        return jobs

    async def put(self, job: JobManifest) -> bool:
        """Store ``job``; True if it was new or changed.

        Re-uploading the same version with different content is a conflict: agents
        cache jobs and pins by version, so two contents under one version would run
        differently on different machines. A new version replaces the old one. The
        write is a compare-and-set on the KV revision, so two concurrent uploads
        cannot both pass the check.
        """
        kv = await self._bus.kv(subjects.KV_JOBS)
        for _ in range(5):
            existing, revision = await self._get_with_revision(job.id)
            if existing is not None and existing.version == job.version:
                if _encode(existing) == _encode(job):
                    return False
                raise Conflict(
                    f"job {job.id!r} version {job.version!r} already exists with different "
                    "content; bump the version to change it",
                    job_id=job.id,
                    version=job.version,
                )
            try:
                if revision is None:
                    await kv.create(job.id, _encode(job))
                else:
                    await kv.update(job.id, _encode(job), last=revision)
            except KeyWrongLastSequenceError:
                continue  # someone wrote in between: re-check against their version
            return True
        raise Conflict(f"job {job.id!r} is being changed concurrently; retry", job_id=job.id)
