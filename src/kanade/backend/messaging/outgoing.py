"""The messages one exec consists of on the bus: its commands (one per address subject), its
exec record and its audit record — each with the deterministic ``Nats-Msg-Id`` that makes a
second publish of the same exec (a retry, a second replica, a restart) a broker-side duplicate.

Built here once for the exec service, the scheduler (which builds them ahead of a fire's
instant and publishes them pipelined) and the rollout runner.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from kanade.backend.messaging import audit
from kanade.bus.publish import Outgoing
from kanade.core import subjects
from kanade.core.auditactions import subject_token
from kanade.core.models.records import AuditRecord, ExecRecord
from kanade.core.models.wire import Command, encode
from kanade.core.msgids import audit_msg_id, command_msg_id, exec_created_msg_id

EXEC_CREATE = "exec.create"


# Steps 3-5 of _dispatch for an exec whose row the scheduler already claimed (insert-if-
# absent on its occurrence-derived exec_id), as ready-made messages: the scheduler builds
# them before a fire's nominal instant and publishes a tick's fires in phases (every
# command, then every record, then every audit) through send_pipelined. Same
# subjects and the same deterministic Nats-Msg-Ids as _dispatch: publishing one
# occurrence again is dropped by the broker.
def command_messages(command: Command, subs: list[str]) -> list[Outgoing]:
    payload = encode(command)  # encoded once for every address
    return [Outgoing(s, payload, command_msg_id(command.request_id, s)) for s in subs]


def record_message(record: ExecRecord) -> Outgoing:
    return Outgoing(
        subjects.exec_subject("created", record.exec_id),
        encode(record),
        exec_created_msg_id(record.exec_id),
    )


def audit_message(record: ExecRecord, command: Command) -> Outgoing:
    return Outgoing(
        subjects.audit_subject(subject_token(EXEC_CREATE)),
        encode(audit_record(record, command, record.created_at)),
        audit_msg_id(EXEC_CREATE, record.exec_id),
    )


def audit_record(record: ExecRecord, command: Command, now: datetime) -> AuditRecord:
    return audit.audit_record(
        EXEC_CREATE,
        record.initiated_by,
        now,
        {
            "exec_id": record.exec_id,
            "kind": record.kind,
            "job_id": record.job_id,
            "version": record.version,
            "target": record.target,
            "expected_count": record.expected_count,
            "request_id": record.request_id,
            # Never the script or env (secrets); the hash identifies what ran.
            "script_sha256": command.script_sha256 or _sha256(command.script),
        },
    )


def _sha256(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()
