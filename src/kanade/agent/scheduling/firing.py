"""Turning one occurrence of a schedule into the command this agent runs (SPEC §3.6):
deterministic ids derived from the occurrence (re-firing it is a ledger DUPLICATE), the
job from the catalog, and the script object's resolved digest."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

# The scheduling core is imported where it is used; these names are for annotations only.
if TYPE_CHECKING:
    from kanade.core.models.job import JobManifest
    from kanade.core.models.schedule import Schedule
    from kanade.core.models.wire import Command
    from kanade.core.scheduling import Plan


class NotFired(Exception):
    """Why an occurrence cannot be fired (the scheduler warns once per schedule and reason)."""


def occurrence_command(
    schedule: Schedule,
    plan: Plan,
    nominal: datetime,
    *,
    pc_id: str,
    jobs: Mapping[str, JobManifest],
    digests: Mapping[str, str],
    revoked_offline: Collection[str] = (),
) -> Command:
    """The command of ``schedule``'s occurrence at ``nominal`` for the agent ``pc_id``.

    ``revoked_offline``: the cached revoked job ids, while the agent (restarted offline)
    has no live revocations for its gate yet. Raises :class:`NotFired`.
    """
    from kanade.core.dispatch import build_command
    from kanade.core.models.target import Target
    from kanade.core.scheduling import deadline_at, exec_id_for, occurrence_id, request_id_for

    job = jobs.get(schedule.job_id)
    if job is None:
        raise NotFired(f"job {schedule.job_id!r} is not in the job catalog; not fired")
    if job.id in revoked_offline:
        raise NotFired(f"job {job.id!r} was revoked (cached state); not fired")
    digest: str | None = None
    if job.execute.script_object:
        digest = digests.get(job.execute.script_object)
        if digest is None:
            raise NotFired(
                f"job {job.id!r}: the sha256 of script object {job.execute.script_object!r} "
                "could not be resolved from the object store; not fired"
            )
    occurrence = occurrence_id(schedule.id, nominal)
    try:
        return build_command(
            job,
            exec_id=exec_id_for(occurrence),
            request_id=request_id_for(occurrence, pc_id),
            address=Target(pcs=[pc_id]),
            issued_at=nominal,
            deadline_at=deadline_at(plan, nominal),  # deterministic per occurrence
            jitter_s=plan.jitter.total_seconds(),
            schedule_id=schedule.id,
            nominal_time=nominal,
            script_sha256=digest,
            retry=schedule.retry,
        )
    except ValueError as exc:
        raise NotFired(f"job {job.id!r} cannot be dispatched ({exc}); not fired") from exc
