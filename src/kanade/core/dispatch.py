"""Pure command building (SPEC §2.4): a validated job + where/when → a wire ``Command``.

The backend (manual execs, the central scheduler, ad-hoc runs) and the agent's local
scheduler both build commands here, so the wire shape and the budget rules (SPEC §4.9)
have one implementation. No I/O: ids, clocks and digests are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kanade.core.lifecycle import exec_deadline
from kanade.core.models.constraints import Retry
from kanade.core.models.job import Execute, JobManifest
from kanade.core.models.target import Target
from kanade.core.models.wire import (
    CheckHint,
    Command,
    CommandAddress,
    InventoryHint,
    RetryWire,
    Shell,
    StalenessWire,
)
from kanade.core.signing import command_expiry

DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024
ADHOC_PREFIX = "adhoc-"


@dataclass(frozen=True)
class Budgets:
    """The server's caps applied to every command (SPEC §4.9)."""

    max_timeout_s: float | None = None
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES


def _seconds_text(seconds: float) -> str:
    return f"{seconds:g}s"


def build_command(
    job: JobManifest,
    *,
    exec_id: str,
    request_id: str,
    address: Target,
    issued_at: datetime,
    deadline_at: datetime | None = None,
    jitter_s: float = 0.0,
    schedule_id: str | None = None,
    nominal_time: datetime | None = None,
    max_timeout_s: float | None = None,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    script_sha256: str | None = None,
    retry: Retry | None = None,
) -> Command:
    """The command that runs ``job`` on ``address``.

    ``max_timeout_s`` is the server's budget (0 or None = unlimited): a job asking for
    more is capped and the cap is noted in ``Command.notes``, which the agent copies
    into the result so the operator sees why a run stopped early. ``script_sha256`` is
    required for a ``script_object`` job (the backend pins the digest; the agent checks
    it). ``retry`` is the schedule's ``on_failure.retry``, when fired by a schedule.
    """
    ex = job.execute
    if ex.script_file is not None:
        # script_file is a path on the author's machine; the CLI inlines it at upload.
        raise ValueError(f"job {job.id!r} still has script_file; inline it before dispatch")
    if ex.script_object is not None and not script_sha256:
        raise ValueError(f"job {job.id!r} uses script_object {ex.script_object!r}: pin its sha256")
    if jitter_s < 0:
        raise ValueError("jitter_s cannot be negative")

    notes: list[str] = []
    timeout_s = ex.timeout_seconds
    if max_timeout_s is not None and max_timeout_s > 0 and timeout_s > max_timeout_s:
        notes.append(
            f"timeout capped to {_seconds_text(max_timeout_s)} by server budget "
            f"(job asked {_seconds_text(timeout_s)})"
        )
        timeout_s = max_timeout_s

    return Command(
        request_id=request_id,
        exec_id=exec_id,
        job_id=job.id,
        version=job.version,
        shell=ex.shell,
        script=ex.script,
        script_object=ex.script_object,
        script_sha256=script_sha256 if ex.script_object is not None else None,
        timeout_s=timeout_s,
        jitter_s=jitter_s,
        run_as=ex.run_as,
        run_as_user=ex.user,
        cwd=ex.cwd,
        env=dict(ex.env),
        issued_at=issued_at,
        expires_at=command_expiry(issued_at),
        deadline_at=deadline_at,
        staleness=StalenessWire(
            mode=job.staleness.mode, max_cache_age_s=job.staleness.max_cache_age_seconds
        ),
        retry=None
        if retry is None
        else RetryWire(max=retry.max, backoff_s=retry.backoff.total_seconds()),
        inventory=None
        if job.inventory is None
        else InventoryHint(
            display=list(job.inventory.display), summary=list(job.inventory.summary)
        ),
        check=None
        if job.check is None
        else CheckHint(
            name=job.check.name,
            status_field=job.check.status_field,
            detail_field=job.check.detail_field,
        ),
        schedule_id=schedule_id,
        nominal_time=nominal_time,
        address=CommandAddress(all=address.all, groups=list(address.groups), pcs=list(address.pcs)),
        max_output_bytes=max_output_bytes,
        notes=notes,
    )


def command_deadline(command: Command) -> datetime:
    """The instant after which no pc starts ``command`` (its starting deadline or its
    signed expiry): the deadline of the exec that sends it (SPEC §4.3)."""
    return exec_deadline(
        command.issued_at, expires_at=command.expires_at, deadline_at=command.deadline_at
    )


def adhoc_job_id(exec_id: str) -> str:
    return ADHOC_PREFIX + exec_id[:12]


def adhoc_job(
    script: str,
    *,
    shell: Shell = "sh",
    timeout: timedelta,
    exec_id: str,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> JobManifest:
    """A throw-away manifest for ``POST /api/run`` / ``kanade run -- <script>``.

    Built through the model, so an ad-hoc run obeys exactly the rules of a stored job
    (a bad shell or a zero timeout raises ``pydantic.ValidationError``, a ``ValueError``).
    """
    return JobManifest(
        id=adhoc_job_id(exec_id),
        version="1",
        description="ad-hoc script",
        execute=Execute(
            shell=shell,
            script=script,
            timeout=timeout,
            env=dict(env or {}),
            cwd=cwd,
        ),
    )
