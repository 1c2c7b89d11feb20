"""Building one fire (pure): its commands, exec record and dispatch marks, encoded into
the messages that are all that is left to publish at the instant."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kanade.backend.messaging.outgoing import command_messages, record_message
from kanade.backend.workers.scheduler.catalog_watch import Entry
from kanade.bus.publish import Outgoing
from kanade.core import subjects
from kanade.core.dispatch import Budgets, build_command, command_deadline
from kanade.core.lifecycle import exec_deadline
from kanade.core.models.job import JobManifest
from kanade.core.models.records import ExecRecord
from kanade.core.models.target import Target
from kanade.core.models.wire import Command
from kanade.core.scheduling import (
    DispatchMark,
    Fire,
    exec_id_for,
    make_dispatch_mark,
    request_id_for,
)
from kanade.core.statuses import ExecStatus
from kanade.core.targeting import command_subjects


@dataclass
class Planned:
    """One fire ready to publish."""

    entry: Entry
    fire: Fire
    job: JobManifest
    record: ExecRecord
    commands: list[tuple[Command, list[str]]]
    pcs: list[str]
    reconcile: bool
    note: str | None = None
    marks: list[DispatchMark] = field(default_factory=list)
    messages: list[Outgoing] = field(default_factory=list)
    """The encoded commands, one per address subject."""
    record_message: Outgoing | None = None


def build(
    entry: Entry,
    fire: Fire,
    job: JobManifest,
    script_sha256: str | None,
    target: Target,
    pcs: list[str],
    stamp: datetime,
    note: str | None,
    budgets: Budgets,
) -> Planned:
    """``stamp`` is the fire's moment: issued_at, created_at, the marks' dispatched_at
    (the tick's now; the nominal time for a fire prepared ahead)."""
    schedule = entry.schedule
    plan = entry.plan
    occurrence = fire.occurrence_id
    exec_id = exec_id_for(occurrence)
    reconcile = plan.is_reconcile

    def command(request_id: str, address: Target) -> Command:
        return build_command(
            job,
            exec_id=exec_id,
            request_id=request_id,
            address=address,
            issued_at=stamp,
            deadline_at=fire.deadline_at,
            jitter_s=plan.jitter.total_seconds(),
            schedule_id=schedule.id,
            nominal_time=fire.nominal,
            max_timeout_s=budgets.max_timeout_s,
            max_output_bytes=budgets.max_output_bytes,
            script_sha256=script_sha256,
            retry=schedule.retry,
        )

    commands: list[tuple[Command, list[str]]]
    marks: list[DispatchMark] = []
    if reconcile:
        # One command per pc (its own request id), so each pc is addressed and
        # deduplicated on its own and a dispatch mark can follow it.
        commands = [
            (
                command(request_id_for(occurrence, pc), Target(pcs=[pc])),
                [subjects.command_subject("pc", pc, job.id)],
            )
            for pc in pcs
        ]
        timeout = timedelta(seconds=commands[0][0].timeout_s) if commands else timedelta(0)
        marks = [
            make_dispatch_mark(
                plan, pc, dispatched_at=stamp, timeout=timeout, occurrence_id=occurrence
            )
            for pc in pcs
        ]
        recorded_target = Target(pcs=pcs)
    else:
        whole = command(request_id_for(occurrence), target)
        commands = [(whole, command_subjects(target, job.id))]
        recorded_target = target
    first = commands[0][0] if commands else None
    # The exec's deadline (SPEC §4.3); a fire sent in waves gets it from its waves.
    if schedule.rollout is not None and not reconcile and commands:
        deadline: datetime | None = None
    elif first is not None:
        deadline = command_deadline(first)
    else:
        deadline = exec_deadline(stamp, expires_at=None, deadline_at=fire.deadline_at)
    record = ExecRecord(
        exec_id=exec_id,
        kind="job",
        job_id=job.id,
        version=job.version,
        target=recorded_target.model_dump(mode="json", include={"all", "groups", "pcs"}),
        expected_pcs=pcs,
        expected_count=len(pcs),
        status=ExecStatus.PENDING.value,
        initiated_by=f"schedule:{schedule.id}",
        schedule_id=schedule.id,
        nominal_time=fire.nominal,
        created_at=stamp,
        request_id=request_id_for(occurrence),
        inventory_hint=None
        if first is None or first.inventory is None
        else first.inventory.model_dump(mode="json"),
        check_hint=None
        if first is None or first.check is None
        else first.check.model_dump(mode="json"),
        deadline_at=deadline,
    )
    # Encoded here, so that publishing is all that is left at the instant.
    messages = [m for c, subs in commands for m in command_messages(c, subs)]
    return Planned(
        entry,
        fire,
        job,
        record,
        commands,
        pcs,
        reconcile,
        note,
        marks,
        messages,
        record_message(record),
    )
