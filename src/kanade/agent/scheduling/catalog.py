"""The local scheduler's catalogs (SPEC §3.6): what it reads (the live KV mirrors once
synced, the on-disk cache before), the script-object digests it resolves while connected,
and the cache it writes so an agent restarted offline keeps firing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from kanade.agent.durable.schedstore import CachedCatalog
from kanade.agent.fleet.state import FleetState
from kanade.agent.scheduling.documents import (
    json_doc,
    parse_jobs,
    parse_schedules,
    raw_doc,
)
from kanade.core import subjects
from kanade.core.digests import sha256_hex_from_nats_digest

# The scheduling core is imported where it is used; these names are for annotations only.
if TYPE_CHECKING:
    from nats.aio.client import Client

    from kanade.core.models.job import JobManifest
    from kanade.core.models.schedule import Schedule
    from kanade.core.scheduling import Freeze

log = logging.getLogger("kanade.agent.scheduler")

DIGEST_TIMEOUT_S: Final = 3.0


@dataclass
class Catalogs:
    """One reading of the catalogs, as far as this agent is concerned."""

    everything: dict[str, Schedule]  # every readable schedule (to prune successes)
    wanted: list[Schedule]  # the schedules this agent applies
    jobs: dict[str, JobManifest]
    freeze: Freeze | None
    live: bool  # read from synced mirrors (not from the cache)


def _freeze_unreadable(exc: Exception) -> None:
    log.error("unreadable fleet freeze record (%s); treating the fleet as frozen", exc)


def read_catalogs(
    fleet: FleetState, cache: CachedCatalog, pc_id: str, groups: list[str]
) -> Catalogs:
    from kanade.core.freeze import FREEZE_KEY, decode_freeze
    from kanade.core.scheduling import agent_schedule_set

    live = fleet.schedules.synced and fleet.membership.synced
    if live:
        everything = parse_schedules(fleet.schedules.values)
        wanted = agent_schedule_set(everything.values(), pc_id, groups)
    else:
        cached = {k: raw_doc(v) for k, v in cache.schedules.items()}
        everything = parse_schedules(cached)
        wanted = sorted(everything.values(), key=lambda s: s.id)
    if fleet.jobs.synced:
        jobs = parse_jobs(fleet.jobs.values)
    else:
        jobs = parse_jobs({k: raw_doc(v) for k, v in cache.jobs.items()})
    if fleet.freeze.synced:
        freeze = decode_freeze(fleet.freeze.values.get(FREEZE_KEY), _freeze_unreadable)
    else:
        cached_freeze = None if cache.freeze is None else raw_doc(cache.freeze)
        freeze = decode_freeze(cached_freeze, _freeze_unreadable)
    return Catalogs(everything, list(wanted), jobs, freeze, live)


async def resolve_digests(
    nc: Client | None,
    wanted: Iterable[Schedule],
    jobs: Mapping[str, JobManifest],
    digests: dict[str, str],
) -> None:
    """Update ``digests`` (script object name → sha256) for the jobs ``wanted`` use; a
    failed read keeps what is known."""
    names = sorted(
        {
            job.execute.script_object
            for s in wanted
            if (job := jobs.get(s.job_id)) is not None and job.execute.script_object
        }
    )
    if not names or nc is None or not nc.is_connected:
        return
    from nats.js.errors import NotFoundError

    try:
        store = await asyncio.wait_for(
            nc.jetstream().object_store(subjects.OBJ_SCRIPTS), DIGEST_TIMEOUT_S
        )
    except Exception as exc:
        log.warning("cannot open the scripts object store (%s); keeping known digests", exc)
        return
    for name in names:
        try:
            info = await asyncio.wait_for(store.get_info(name), DIGEST_TIMEOUT_S)
        except NotFoundError:
            digests.pop(name, None)
            log.warning("script object %r is not in the scripts object store", name)
            continue
        except Exception as exc:
            log.warning("cannot resolve script object %r (%s); keeping its digest", name, exc)
            continue
        digest = getattr(info, "digest", None)
        if digest:
            digests[name] = sha256_hex_from_nats_digest(digest)


def catalog_to_cache(
    fleet: FleetState,
    *,
    applied: Mapping[str, Schedule],
    jobs: Mapping[str, JobManifest],
    freeze: Freeze | None,
    digests: Mapping[str, str],
    previous: CachedCatalog | None,
    groups: list[str],
) -> CachedCatalog | None:
    """What to cache on disk of the ``applied`` schedules (by id), the jobs they use, their
    digests and the freeze; None when nothing is applied and nothing was cached."""
    from kanade.core.freeze import FREEZE_KEY

    schedules: dict[str, Any] = {}
    for sid, schedule in applied.items():
        raw = fleet.schedules.values.get(sid)
        doc = json_doc(raw) if raw is not None else None
        schedules[sid] = doc if doc is not None else schedule.model_dump(mode="json")
    used_jobs: dict[str, Any] = {}
    for schedule in applied.values():
        job = jobs.get(schedule.job_id)
        if job is None:
            continue
        raw = fleet.jobs.values.get(job.id) if fleet.jobs.synced else None
        doc = json_doc(raw) if raw is not None else None
        used_jobs[job.id] = (
            doc if doc is not None else job.model_dump(mode="json", exclude_none=True)
        )
    if not schedules and previous is None:
        return None
    freeze_doc = None
    if freeze is not None:
        raw = fleet.freeze.values.get(FREEZE_KEY) if fleet.freeze.synced else None
        freeze_doc = json_doc(raw) if raw is not None else freeze.to_json()
    revoked = (
        sorted(fleet.revocations.values)
        if fleet.revocations.synced
        else list((previous or CachedCatalog()).revoked)
    )
    used = {
        job.execute.script_object
        for job_id in used_jobs
        if (job := jobs.get(job_id)) is not None and job.execute.script_object
    }
    return CachedCatalog(
        schedules=schedules,
        jobs=used_jobs,
        digests={k: v for k, v in digests.items() if k in used},
        freeze=freeze_doc,
        groups=groups,
        revoked=revoked,
    )
