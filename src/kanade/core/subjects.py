"""Names of every NATS subject, stream, KV bucket and object store kanade uses.

This is the wire contract between agent and backend, kept in one place so the
two can never disagree. Pure string functions; no I/O.

Command plane: one JetStream stream holds commands under
``kanade.cmd.<scope>.<target>.<job_id>`` with at most one message per subject,
so while an agent is away the stream keeps only the newest command of each job
per target: an older queued version is superseded by the broker itself.
"""

from __future__ import annotations

from typing import Final, Literal

PREFIX: Final = "kanade"

# --- streams -----------------------------------------------------------------
STREAM_COMMANDS: Final = "KANADE_COMMANDS"
STREAM_RESULTS: Final = "KANADE_RESULTS"
STREAM_EXECS: Final = "KANADE_EXECS"
STREAM_AUDIT: Final = "KANADE_AUDIT"
STREAM_DECISIONS: Final = "KANADE_DECISIONS"

COMMANDS_ALL: Final = f"{PREFIX}.cmd.>"
RESULTS_ALL: Final = f"{PREFIX}.result.>"
STARTED_ALL: Final = f"{PREFIX}.started.>"
EXECS_ALL: Final = f"{PREFIX}.exec.>"
AUDIT_ALL: Final = f"{PREFIX}.audit.>"
DECISIONS_ALL: Final = f"{PREFIX}.decision.>"

# --- KV buckets and object stores ----------------------------------------------
KV_JOBS: Final = "kanade_jobs"
KV_SCHEDULES: Final = "kanade_schedules"
KV_PINS: Final = "kanade_pins"
KV_REVOCATIONS: Final = "kanade_revocations"
KV_CONFIG: Final = "kanade_config"
KV_GROUPS: Final = "kanade_groups"
KV_FREEZE: Final = "kanade_freeze"
KV_DISPATCH: Final = "kanade_dispatch"
# The command-signing public keys agents trust (SPEC §8.2 rotation), signed by a key
# they already trust.
KV_TRUST: Final = "kanade_trust"
SIGNING_KEYS_KEY: Final = "signing_keys"
"""The key of the backend's signing-key set in :data:`KV_TRUST` (rotation, SPEC §8.2)."""
# Operator state the database is rebuilt from after a wipe (SPEC §1.3): users (with their
# password hashes), approvals, rollouts, schedule counters. The backend's alone: no agent
# may read it (security/permissions.py).
KV_STATE: Final = "kanade_state"
KV_BUCKETS: Final = (
    KV_JOBS,
    KV_SCHEDULES,
    KV_PINS,
    KV_REVOCATIONS,
    KV_CONFIG,
    KV_GROUPS,
    KV_FREEZE,
    KV_DISPATCH,
    KV_TRUST,
    KV_STATE,
)
# Every bucket an agent obeys is signed; the scheduler's own dispatch marks and the
# backend's operator state are not (no agent reads them).
SIGNED_BUCKETS: Final = frozenset(KV_BUCKETS) - {KV_DISPATCH, KV_STATE}
"""The buckets agents obey: every write to them carries the backend's signature (SPEC §8.2)."""

OBJ_SCRIPTS: Final = "kanade_scripts"
OBJ_OUTPUTS: Final = "kanade_outputs"
OBJ_RELEASES: Final = "kanade_releases"
OBJECT_STORES: Final = (OBJ_SCRIPTS, OBJ_OUTPUTS, OBJ_RELEASES)

Scope = Literal["all", "group", "pc"]


# --- command plane -------------------------------------------------------------
def command_subject(scope: Scope, target: str | None, job_id: str) -> str:
    """Subject of a command for one job addressed to all agents, a group, or a pc."""
    if scope == "all":
        return f"{PREFIX}.cmd.all.{job_id}"
    if not target:
        raise ValueError(f"scope {scope!r} needs a target")
    return f"{PREFIX}.cmd.{scope}.{target}.{job_id}"


def agent_command_filters(pc_id: str, groups: list[str] | tuple[str, ...]) -> list[str]:
    """The filter subjects of one agent's command consumer: all, its groups, its pc_id."""
    filters = [f"{PREFIX}.cmd.all.*", f"{PREFIX}.cmd.pc.{pc_id}.*"]
    filters += [f"{PREFIX}.cmd.group.{g}.*" for g in sorted(set(groups))]
    return filters


def parse_command_subject(subject: str) -> tuple[Scope, str | None, str] | None:
    """Inverse of :func:`command_subject`; None when the subject is not a command subject."""
    parts = subject.split(".")
    if len(parts) < 4 or parts[0] != PREFIX or parts[1] != "cmd":
        return None
    if parts[2] == "all" and len(parts) == 4:
        return "all", None, parts[3]
    if parts[2] in ("group", "pc") and len(parts) == 5:
        scope: Scope = "group" if parts[2] == "group" else "pc"
        return scope, parts[3], parts[4]
    return None


def agent_consumer_name(pc_id: str) -> str:
    return f"agent-{pc_id}"


# --- result plane ----------------------------------------------------------------
def result_subject(pc_id: str) -> str:
    return f"{PREFIX}.result.{pc_id}"


def consumer_request_subject(pc_id: str) -> str:
    """An agent asks the backend to (re)create its command consumer here (request/reply):
    agents may not create consumers themselves, since a consumer's filter decides which
    commands it reads (SPEC §8.1)."""
    return f"{PREFIX}.agent.{pc_id}.consumer"


def agent_inbox_prefix(pc_id: str) -> str:
    """Reply subjects of one agent: the only ``_INBOX`` subjects it may read, so it never
    sees the replies other clients receive (SPEC §8.1)."""
    return f"_INBOX.{pc_id}"


CONSUMER_REQUESTS_ALL: Final = f"{PREFIX}.agent.*.consumer"


def started_subject(pc_id: str) -> str:
    return f"{PREFIX}.started.{pc_id}"


def decision_subject(pc_id: str, schedule_id: str) -> str:
    """What an agent's local scheduler decided about an occurrence of ``schedule_id``
    (SPEC §3.6): one subject per pc and schedule, so the stream keeps the newest reports
    of each."""
    return f"{PREFIX}.decision.{pc_id}.{schedule_id}"


def agent_decisions(pc_id: str) -> str:
    """Every decision subject of one pc: what its credential may publish."""
    return f"{PREFIX}.decision.{pc_id}.*"


# --- backend records ---------------------------------------------------------------
def exec_subject(event: str, exec_id: str) -> str:
    """Execution records (created, status changes): the DB rebuilds executions from these."""
    return f"{PREFIX}.exec.{event}.{exec_id}"


def audit_subject(action: str) -> str:
    return f"{PREFIX}.audit.{action}"


# --- telemetry and control (core NATS) -------------------------------------------
HEARTBEAT_ALL: Final = f"{PREFIX}.hb.*"


def heartbeat_subject(pc_id: str) -> str:
    return f"{PREFIX}.hb.{pc_id}"


def ping_subject(pc_id: str) -> str:
    return f"{PREFIX}.ctl.{pc_id}.ping"


KILL_SUBJECT: Final = f"{PREFIX}.ctl.kill"


# --- backend replicas (core NATS, backend identities only) ----------------------------
DASHBOARD_EVENTS_ALL: Final = f"{PREFIX}.dash.*"
"""Dashboard invalidation events one backend replica tells the others (SPEC §9: a change
made through one replica reaches a browser connected to another)."""


def dashboard_events_subject(replica: str) -> str:
    """Where replica ``replica`` (a token: no dots) publishes its dashboard events."""
    return f"{PREFIX}.dash.{replica}"


# --- live output (core NATS, never stored) ------------------------------------------
# A running script's output as it is written (SPEC §4.12), published by its agent only while
# someone watches the exec: the backend renews a watch lease on LIVE_WATCH_SUBJECT
# (docs/live-output.md).
LIVE_WATCH_SUBJECT: Final = f"{PREFIX}.ctl.live"
"""Backend → every agent: which execs someone is watching (a lease, renewed)."""


def live_subject(pc_id: str, exec_id: str) -> str:
    """Output chunks of one pc's run of one exec."""
    return f"{PREFIX}.live.{pc_id}.{exec_id}"


def live_exec_subjects(exec_id: str) -> str:
    """Every pc's output chunks of one exec: what the backend subscribes to while watched."""
    return f"{PREFIX}.live.*.{exec_id}"


def agent_live(pc_id: str) -> str:
    """Every live-output subject of one pc: what its credential may publish."""
    return f"{PREFIX}.live.{pc_id}.*"


def parse_live_subject(subject: str) -> tuple[str, str] | None:
    """``(pc_id, exec_id)`` of a :func:`live_subject`; None for anything else."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[0] != PREFIX or parts[1] != "live":
        return None
    return parts[2], parts[3]
