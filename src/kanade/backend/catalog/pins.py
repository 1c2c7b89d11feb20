"""Version pins (KV ``kanade_pins``) and the script-object digest a command carries (SPEC §4.1).

Pinning happens *before* any command exists, so an agent that sees a command also sees the
pin it is gated on. Shared by the exec service and the scheduler.
"""

from __future__ import annotations

from nats.js.errors import NotFoundError

from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.digests import sha256_hex_from_nats_digest
from kanade.core.models.job import JobManifest


class ScriptObjectMissing(LookupError):
    """The job names a script object that is not in the scripts object store."""


class ScriptObjectUnusable(ValueError):
    """The script object exists but carries no digest to pin."""


async def script_digest(bus: Bus, job: JobManifest) -> str | None:
    """The sha256 (hex) of the job's script object, None for an inline script."""
    name = job.execute.script_object
    if name is None:
        return None
    store = await bus.obj(subjects.OBJ_SCRIPTS)
    try:
        info = await store.get_info(name)
    except NotFoundError:
        raise ScriptObjectMissing(
            f"{name!r} is not in the scripts object store; upload it first"
        ) from None
    if not info.digest:
        raise ScriptObjectUnusable(f"script object {name!r} has no digest; re-upload it")
    return sha256_hex_from_nats_digest(info.digest)


async def pin_version(bus: Bus, job: JobManifest) -> None:
    """Pin the job's version: agents skip (124) a command of any other version."""
    kv = await bus.kv(subjects.KV_PINS)
    await kv.put(job.id, job.version.encode())


async def pin(bus: Bus, job: JobManifest) -> str | None:
    """Pin the job's version and return its script digest (None for inline scripts)."""
    digest = await script_digest(bus, job)
    await pin_version(bus, job)
    return digest
