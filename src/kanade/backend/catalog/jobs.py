"""The job catalog: manifests in the KV bucket ``kanade_jobs`` (key = job id).

The catalog lives in KV, not SQL, so agents can watch it directly and the SQL
database stays a pure projection of the streams.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import structlog
from nats.js.errors import KeyNotFoundError

from kanade.backend.catalog.limits import JOB_BYTES, USE_SCRIPT_OBJECT, require_fits
from kanade.backend.errors import Conflict, Corrupt, Forbidden, NotFound
from kanade.bus.connection import Bus
from kanade.bus.kvcas import CasConflict, compare_and_set
from kanade.bus.kvsigned import SignedKeyValue, UnsignedDocument
from kanade.bus.kvsnapshot import kv_snapshot
from kanade.core import subjects
from kanade.core.approvals import lowers_approval
from kanade.core.bounds import loads as json_loads
from kanade.core.ids import is_slug
from kanade.core.instants import Clock, system_clock
from kanade.core.models.job import JobManifest
from kanade.core.validation import parse_job

log = structlog.get_logger(__name__)


def job_document(job: JobManifest) -> dict[str, Any]:
    """The canonical JSON form of a manifest (durations in the human grammar)."""
    return job.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class Stored:
    """What an upload did: ``changed`` (new or different), and the version whose approval
    requirement it removed, if it did (``lowered_from``)."""

    changed: bool
    lowered_from: str | None = None


PUT_ATTEMPTS = 5
"""Compare-and-set attempts of an upload before a concurrent writer wins."""


def _encode(job: JobManifest) -> bytes:
    return json.dumps(job_document(job), sort_keys=True, separators=(",", ":")).encode()


def _decode(job_id: str, raw: bytes) -> JobManifest:
    # Tolerant read: a manifest stored by a newer backend may carry fields we
    # do not know yet; they are dropped, not rejected.
    try:
        return parse_job(json_loads(raw), strict=False)
    except ValueError as exc:  # DocumentInvalid and JSONDecodeError are ValueErrors
        raise Corrupt(
            f"the stored job {job_id!r} cannot be read: {exc}; upload it again",
            job_id=job_id,
        ) from None


class JobCatalog:
    def __init__(self, bus: Bus, *, clock: Clock = system_clock) -> None:
        self._bus = bus
        self._clock = clock

    async def get(self, job_id: str) -> JobManifest | None:
        if not is_slug(job_id):
            return None  # cannot be a stored id (and is not a valid KV key)
        kv = await self._bus.kv(subjects.KV_JOBS)
        if isinstance(kv, SignedKeyValue):
            # A job is turned into signed commands: only one this backend signed (a
            # manifest written into KV by anyone else would run under its signature).
            try:
                raw = await kv.verified(job_id, self._clock())
            except UnsignedDocument as exc:
                raise Corrupt(
                    f"the stored job {job_id!r} is not signed by this backend ({exc}); "
                    "upload it again",
                    job_id=job_id,
                ) from None
            return None if raw is None else _decode(job_id, raw)
        try:
            entry = await kv.get(job_id)
        except KeyNotFoundError:
            return None
        return None if entry.value is None else _decode(job_id, entry.value)

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

    async def put(self, job: JobManifest, *, may_lower_approval: bool = True) -> Stored:
        """Store ``job``; whether it was new or changed, and whether it lowered the stored
        version's approval requirement (refused with :class:`Forbidden` unless
        ``may_lower_approval``: only an admin may, SPEC §4.8).

        Re-uploading the same version with different content is a conflict: agents
        cache jobs and pins by version, so two contents under one version would run
        differently on different machines. A new version replaces the old one. The
        write is a compare-and-set on the KV revision, so two concurrent uploads
        cannot both pass the check.
        """
        require_fits(f"job {job.id!r}", len(_encode(job)), JOB_BYTES, USE_SCRIPT_OBJECT)
        kv = await self._bus.kv(subjects.KV_JOBS)
        # A stored document this backend did not sign (written around it, with a stolen
        # broker credential) is not a version to protect: the operator's upload repairs it.
        tampered = False
        if isinstance(kv, SignedKeyValue):
            try:
                await kv.verified(job.id, self._clock())
            except UnsignedDocument as exc:
                tampered = True
                log.warning("replacing a job document not signed by this backend",
                            job_id=job.id, reason=str(exc))

        lowered: list[str] = []

        def upload(raw: bytes | None) -> bytes | None:
            existing = None if raw is None or tampered else _decode(job.id, raw)
            lowered.clear()
            if existing is not None and lowers_approval(
                existing.require_approval, job.require_approval
            ):
                if not may_lower_approval:
                    raise Forbidden(
                        f"job {job.id!r} version {existing.version!r} requires approval; "
                        "only an admin may store a version without require_approval",
                        job_id=job.id,
                    )
                lowered.append(existing.version)
            if existing is not None and existing.version == job.version:
                if _encode(existing) == _encode(job):
                    return raw  # already stored: nothing to write
                raise Conflict(
                    f"job {job.id!r} version {job.version!r} already exists with different "
                    "content; bump the version to change it",
                    job_id=job.id,
                    version=job.version,
                )
            return _encode(job)

        try:
            result = await compare_and_set(kv, job.id, upload, attempts=PUT_ATTEMPTS)
        except CasConflict:
            raise Conflict(
                f"job {job.id!r} is being changed concurrently; retry", job_id=job.id
            ) from None
        changed = result.new != result.old
        return Stored(changed, lowered[0] if lowered and changed else None)
