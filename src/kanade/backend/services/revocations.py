"""Revoking jobs (SPEC §3.7, §4.5): revoke, unrevoke, list, and job delete (which revokes).

KV layout the agents mirror (see ``kanade.agent.kvmirror``): bucket ``kanade_revocations``,
key = job id, value = JSON ``{"revoked_at", "by", "reason"}``; presence means revoked,
unrevoke deletes the key. Every change is audited (a failed audit publish is logged,
not raised: the change is already made).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from kanade.backend.catalog.jobs import JobCatalog
from kanade.backend.errors import Forbidden
from kanade.backend.messaging.audit import publish_audit
from kanade.backend.services.slugs import require_slug
from kanade.bus import kvcas
from kanade.bus.connection import Bus
from kanade.bus.kvsnapshot import kv_snapshot
from kanade.core import subjects
from kanade.core.approvals import lowers_approval
from kanade.core.instants import Clock, system_clock
from kanade.core.models.records import Revocation

log = structlog.get_logger(__name__)


class RevocationService:
    def __init__(self, bus: Callable[[], Bus], *, clock: Clock = system_clock) -> None:
        self._bus = bus  # a getter: raises Unavailable (503) while the broker is away
        self._clock = clock

    async def revoke(self, job_id: str, *, reason: str | None, actor: str) -> dict[str, Any]:
        require_slug(job_id, "job_id")
        bus = self._bus()
        kv = await bus.kv(subjects.KV_REVOCATIONS)
        now = self._clock()
        revocation = Revocation(revoked_at=now, by=actor, reason=reason or "")
        record = revocation.fields()
        previous = await kvcas.read(kv, job_id)
        await kv.put(job_id, revocation.encode())
        await publish_audit(
            self._bus, "revoke", actor, {"job_id": job_id, "reason": record["reason"]}, at=now
        )
        log.info("job revoked", job_id=job_id, actor=actor, reason=record["reason"])
        return {
            "job_id": job_id,
            "revoked": True,
            "was_revoked": previous.value is not None,
            **record,
        }

    async def unrevoke(self, job_id: str, *, actor: str) -> dict[str, Any]:
        require_slug(job_id, "job_id")
        bus = self._bus()
        kv = await bus.kv(subjects.KV_REVOCATIONS)
        previous = await kvcas.read(kv, job_id)
        if previous.value is not None:
            await kv.delete(job_id)
        await publish_audit(self._bus, "unrevoke", actor, {"job_id": job_id}, at=self._clock())
        log.info("job unrevoked", job_id=job_id, actor=actor)
        return {"job_id": job_id, "revoked": False, "was_revoked": previous.value is not None}

    async def revocations(self) -> list[dict[str, Any]]:
        # A snapshot, not kv.keys(): that is a KV watcher, a broker consumer per read.
        snapshot = await kv_snapshot(self._bus().js, subjects.KV_REVOCATIONS)
        out = []
        for key, (raw, _) in sorted(snapshot.items()):
            record = kvcas.json_or(raw, {})
            if not isinstance(record, dict):
                record = {}
            out.append(
                {
                    "job_id": key,
                    "revoked_at": record.get("revoked_at"),
                    "by": record.get("by"),
                    "reason": record.get("reason", ""),
                }
            )
        return out

    async def delete_job(
        self, job_id: str, *, actor: str, is_admin: bool = True
    ) -> dict[str, Any]:
        """Revoke (SPEC §4.5: job delete revokes it), then drop it from the catalog.

        A job that requires approval is deleted by an admin only: deleting, re-creating
        without the gate and unrevoking would otherwise bypass it (SPEC §4.8).

        Revoked first: agents holding a queued or scheduled copy must refuse it even
        though the manifest is gone. The revocation outlives the manifest; re-uploading
        the job does not unrevoke it (``unrevoke`` does).
        """
        require_slug(job_id, "job_id")
        bus = self._bus()
        job = await JobCatalog(bus).require(job_id)
        if not is_admin and lowers_approval(job.require_approval, None):
            raise Forbidden(
                f"job {job_id!r} requires approval; only an admin may delete it",
                job_id=job_id,
            )
        revoked = await self.revoke(job_id, reason="job deleted", actor=actor)
        jobs = await bus.kv(subjects.KV_JOBS)
        await jobs.delete(job_id)
        await publish_audit(
            self._bus,
            "job_delete",
            actor,
            {"job_id": job_id, "version": job.version},
            at=self._clock(),
        )
        return {
            "job_id": job_id,
            "version": job.version,
            "deleted": True,
            "revoked": True,
            "revoked_at": revoked["revoked_at"],
        }
