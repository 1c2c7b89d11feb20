"""Script objects (SPEC §2.1 ``execute.script_object``): upload and look up scripts in the
object store ``kanade_scripts``, keyed ``NAME/VERSION``.

A script too big to travel inside a command (issue #15: the command stream takes 1 MiB)
is uploaded once here and referenced by jobs; the backend pins its sha256 into each
command and the agent verifies it before running (SPEC §8.3). A version is immutable, like
a job version: agents cache scripts by name, so the same name with two contents would run
differently on different machines. Every upload is audited (never the script itself).
"""

from __future__ import annotations

import hashlib
from typing import Any

import structlog
from nats.js.errors import NotFoundError

from kanade.backend.errors import Conflict, Invalid, NotFound
from kanade.backend.messaging.audit import publish_audit
from kanade.backend.services.base import Service
from kanade.core import subjects
from kanade.core.digests import sha256_hex_from_nats_digest
from kanade.core.models.job import script_object_problem

log = structlog.get_logger(__name__)


def object_name(name: str, version: str) -> str:
    """``NAME/VERSION`` as a job's ``execute.script_object`` names it; 400 when invalid."""
    ref = f"{name}/{version}"
    problem = script_object_problem(ref)
    if problem is not None:
        raise Invalid.at("path", problem)
    return ref


class ScriptService(Service):
    async def info(self, name: str, version: str) -> dict[str, Any]:
        ref = object_name(name, version)
        store = await self._bus().obj(subjects.OBJ_SCRIPTS)
        try:
            info = await store.get_info(ref)
        except NotFoundError:
            raise NotFound(f"script object {ref!r} not found; upload it first") from None
        return _describe(ref, info.size or 0, info.digest)

    async def upload(
        self, name: str, version: str, data: bytes, *, actor: str
    ) -> tuple[dict[str, Any], bool]:
        """Store the script; ``(description, created)``. The same bytes again are a no-op;
        other bytes under a stored version are a conflict (bump the version)."""
        ref = object_name(name, version)
        if not data:
            raise Invalid.at("(body)", "the script is empty")
        sha256 = hashlib.sha256(data).hexdigest()
        store = await self._bus().obj(subjects.OBJ_SCRIPTS)
        try:
            existing = await store.get_info(ref)
        except NotFoundError:
            existing = None
        if existing is not None and existing.digest:
            if sha256_hex_from_nats_digest(existing.digest) == sha256:
                return _describe(ref, existing.size or 0, existing.digest), False
            raise Conflict(
                f"script object {ref!r} already exists with different content; upload it "
                "as a new version (agents cache scripts by name and version)",
                script_object=ref,
            )
        info = await store.put(ref, data)
        await publish_audit(
            self._bus,
            "script_upload",
            actor,
            {"script_object": ref, "sha256": sha256, "size": len(data)},
            at=self._clock(),
        )
        log.info("script object uploaded", script_object=ref, size=len(data), actor=actor)
        return _describe(ref, info.size or len(data), info.digest), True


def _describe(ref: str, size: int, digest: str | None) -> dict[str, Any]:
    return {
        "script_object": ref,
        "size": size,
        "sha256": sha256_hex_from_nats_digest(digest) if digest else None,
    }
