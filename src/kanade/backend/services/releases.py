"""Agent releases (SPEC §3.8): publishing a single-file agent into the ``kanade_releases``
object store, signed, and the fleet's versions.

A release is stored under ``<version>/<platform>``; its object description carries the
manifest (version, platform, sha256, size, build id) and the backend's signature of it
(:func:`kanade.core.signing.release_message`), so an agent runs only bytes whose hash a key
it pins vouched for. A published version is immutable: the same bytes again are accepted
(idempotent), other bytes under the same name are a conflict.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog
from nats.js.api import ObjectMeta
from nats.js.errors import NotFoundError as JsNotFoundError

from kanade.backend.errors import Conflict, Invalid, Unavailable
from kanade.backend.messaging.audit import publish_audit
from kanade.backend.services.agent_config import AgentConfigService
from kanade.backend.store import agents
from kanade.backend.store.database import Database
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.digests import sha256_hex
from kanade.core.instants import Clock, format_instant, system_clock
from kanade.core.releases import (
    MAX_ARTEFACT_BYTES,
    ReleaseError,
    canonical_manifest,
    manifest_document,
    release_object_name,
)

log = structlog.get_logger(__name__)

MANIFEST_MEMBER = "kanade-release.json"  # kanade.cli.zipapp.MANIFEST


def read_artefact_manifest(data: bytes) -> dict[str, Any]:
    """Version, platform and build id from inside a single-file agent."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            inner = json.loads(zf.read(MANIFEST_MEMBER))
    except (KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise Invalid(
            f"the body is not a single-file agent built by `kanade agent build` ({exc})"
        ) from None
    if not isinstance(inner, dict):
        raise Invalid(f"{MANIFEST_MEMBER}: must be an object")
    return inner


def _described(info: Any) -> dict[str, Any] | None:
    try:
        doc = json.loads(info.description or "")
        return {**doc["manifest"], "published_by": doc.get("published_by"),
                "published_at": doc.get("published_at"), "name": info.name}
    except (ValueError, KeyError, TypeError):
        return None


class ReleaseService:
    def __init__(
        self,
        db: Database,
        bus: Callable[[], Bus],
        config: AgentConfigService,
        *,
        clock: Clock = system_clock,
    ) -> None:
        self._db = db
        self._bus = bus
        self._config = config
        self._clock = clock

    async def publish(self, data: bytes, *, actor: str) -> dict[str, Any]:
        if not data:
            raise Invalid("the body is empty: send the artefact's bytes")
        if len(data) > MAX_ARTEFACT_BYTES:
            raise Invalid(f"the artefact is {len(data)} bytes; at most {MAX_ARTEFACT_BYTES}")
        inner = read_artefact_manifest(data)
        try:
            manifest = manifest_document(
                version=str(inner.get("version")), platform=str(inner.get("platform")),
                sha256=sha256_hex(data), size=len(data), build_id=str(inner.get("build_id")),
            )
        except ReleaseError as exc:
            raise Invalid(f"{MANIFEST_MEMBER}: {exc}") from None
        name = release_object_name(str(manifest["version"]), str(manifest["platform"]))
        bus = self._bus()
        if bus.signer is None:
            raise Unavailable("this backend has no signing key: releases must be signed")
        store = await bus.obj(subjects.OBJ_RELEASES)
        try:
            existing = _described(await store.get_info(name))
        except JsNotFoundError:
            existing = None
        if existing is not None:
            if existing.get("sha256") != manifest["sha256"]:
                raise Conflict(
                    f"release {name} is already published with other bytes (sha256 "
                    f"{existing.get('sha256')}); a version is immutable: build a new version",
                    name=name,
                )
            return {**existing, "created": False}
        now = format_instant(self._clock())
        description = json.dumps({
            "manifest": manifest,
            "signature": bus.signer.release_signature(name, canonical_manifest(manifest)),
            "published_by": actor,
            "published_at": now,
        })
        await store.put(name, data, meta=ObjectMeta(name=name, description=description))
        await publish_audit(self._bus, "agent_release_publish", actor,
                            {"name": name, "sha256": manifest["sha256"], "size": len(data)})
        log.info("agent release published", name=name, sha256=manifest["sha256"])
        return {**manifest, "name": name, "published_by": actor, "published_at": now,
                "created": True}

    async def releases(self) -> list[dict[str, Any]]:
        store = await self._bus().obj(subjects.OBJ_RELEASES)
        try:
            infos = await store.list(ignore_deletes=True)
        except JsNotFoundError:  # nats-py: an empty store
            return []
        found = [d for d in (_described(i) for i in infos) if d is not None]
        return sorted(found, key=lambda d: (str(d.get("published_at")), str(d["name"])))

    async def fleet(self) -> dict[str, Any]:
        """Versions across the fleet with counts, quarantined agents, update phases, the
        target each config layer sets, and the published releases."""
        rows = await self._db.read(agents.list_agents)
        versions = Counter(str(r.get("agent_version") or "") for r in rows)
        phases: Counter[str] = Counter()
        quarantined: list[dict[str, Any]] = []
        for row in rows:
            update = row.get("agent_update") or {}
            if not isinstance(update, dict):
                continue
            if update.get("state"):
                phases[str(update["state"])] += 1
            if update.get("quarantined"):
                quarantined.append({
                    "pc_id": row["pc_id"], "versions": list(update["quarantined"]),
                    "running": row.get("agent_version"), "error": update.get("error"),
                })
        layers = await self._config.layers()
        targets = {
            layer: values["target_version"]
            for layer, values in sorted(layers.items())
            if isinstance(values, dict) and values.get("target_version")
        }
        try:
            published = await self.releases()
        except Unavailable:
            published = []
        return {
            "total": len(rows),
            "versions": [{"version": v, "count": n} for v, n in sorted(versions.items())],
            "update_states": dict(sorted(phases.items())),
            "quarantined": quarantined,
            "targets": targets,
            "releases": published,
        }
