"""The SQL projection's tables (SQLAlchemy Core).

Everything here can be rebuilt from the JetStream streams (SPEC §1.3): the
tables are a query-friendly *view* of results, executions and heartbeats, not
the source of truth. Schema changes go through the alembic revisions in
``migrations/versions`` — keep both in step.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)

from kanade.backend.store.types import CleanString, CleanText, UtcDateTime

# A naming convention makes constraint names deterministic, so later
# migrations can refer to them on every backend (SQLite batch mode needs names).
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(128)

agents = Table(
    "agents",
    metadata,
    Column("pc_id", ID, primary_key=True),
    Column("hostname", CleanString(255), nullable=False, default=""),
    Column("agent_version", CleanString(64), nullable=False, default=""),
    Column("os_family", CleanString(32), nullable=False, default=""),
    Column("os_version", CleanString(255), nullable=False, default=""),
    Column("boot_time", UtcDateTime, nullable=True),
    Column("cpu_percent", Float, nullable=False, default=0.0),
    Column("rss_bytes", BigInteger, nullable=False, default=0),
    Column("groups", JSON, nullable=False),
    Column("schedule_set_version", String(128), nullable=True),
    Column("last_command_at", UtcDateTime, nullable=True),
    Column("queue_length", Integer, nullable=False, default=0),
    Column("running", Integer, nullable=False, default=0),
    # Self-update (SPEC §3.8): {state, target, quarantined, error}; None: nothing to report.
    Column("agent_update", JSON, nullable=True),
    # The agent's data directory (SPEC §7): full = it refuses new work; held = messages it
    # keeps in memory because the disk would not take them.
    Column("disk_full", Boolean, nullable=False, default=False, server_default=false()),
    Column("disk_error", String(200), nullable=True),
    Column("disk_free_bytes", BigInteger, nullable=True),
    Column("held_messages", Integer, nullable=False, default=0, server_default="0"),
    # Backend clock, not the agent's: liveness must be immune to agent clock skew.
    Column("last_seen", UtcDateTime, nullable=False),
    Column("first_seen", UtcDateTime, nullable=False),
    # Set by the heartbeat an agent sends when it stops cleanly (revision 0006): it is
    # offline at once; cleared by its next heartbeat.
    Column("stopped_at", UtcDateTime, nullable=True),
    # The settings the agent was started with where they differ from the built-in
    # defaults (revision 0013): the base its KV config layers apply over.
    Column("local_config", JSON, nullable=True),
    # The groups of its own --group flags (a subset of ``groups``; revision 0013).
    Column("static_groups", JSON, nullable=True),
    Index("ix_agents_last_seen", "last_seen"),
)

executions = Table(
    "executions",
    metadata,
    Column("exec_id", ID, primary_key=True),
    Column("kind", String(16), nullable=False),  # job | adhoc
    Column("job_id", ID, nullable=False),
    Column("version", String(128), nullable=False),
    Column("target", JSON, nullable=False),
    Column("expected_pcs", JSON, nullable=False),
    Column("expected_count", Integer, nullable=False, default=0),
    Column("status", String(32), nullable=False),
    Column("initiated_by", String(128), nullable=False),
    Column("schedule_id", ID, nullable=True),
    Column("nominal_time", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # Counters are always *recomputed* from the results rows, never incremented,
    # so a redelivered message can never count twice.
    Column("started_count", Integer, nullable=False, default=0),
    Column("finished_count", Integer, nullable=False, default=0),
    Column("failed_count", Integer, nullable=False, default=0),
    Column("skipped_count", Integer, nullable=False, default=0),
    # Expected pcs closed as no_result (revision 0006), also among finished and failed.
    Column("no_result_count", Integer, nullable=False, default=0, server_default="0"),
    Column("request_id", String(64), nullable=False),
    # The job's inventory/check hints as dispatched (revision 0002): the projector
    # turns results into facts and check statuses in the same batch transaction.
    Column("inventory_hint", JSON, nullable=True),
    Column("check_hint", JSON, nullable=True),
    # The exec's deadline (revision 0007, SPEC §4.3): no pc starts its command after it,
    # and expected pcs that never did are closed as no_result. Null until known (awaiting
    # approval, a rollout's first wave) or for rows written before the revision.
    Column("deadline_at", UtcDateTime, nullable=True),
    # When it ended for good (revision 0007): every expected pc has a row (a result or
    # no_result) and none can start any more. Null while the reaper still has to look.
    Column("ended_at", UtcDateTime, nullable=True),
    # The status of the creation record, pending or awaiting_approval (revision 0008): what
    # the status is derived from, with the decisions and the results (core.execstatus).
    Column("created_status", String(32), nullable=True),
    # What it runs (revision 0014): the whole script's sha256 and shell, and for a script
    # object its name; an inline script's text is in ``scripts``. Null in older rows.
    Column("script_sha256", String(64), nullable=True),
    Column("script_shell", String(16), nullable=True),
    Column("script_object", String(300), nullable=True),
    # When retention first pruned some of its results (revision 0012): its counters are
    # history from then on, never recounted from the rows left (docs/retention.md).
    Column("results_pruned_at", UtcDateTime, nullable=True),
    Index("ix_executions_created_at", "created_at"),
    Index("ix_executions_job_id_created_at", "job_id", "created_at"),
    Index("ix_executions_status_created_at", "status", "created_at"),
)

# Decisions recorded for an exec (revision 0008): approved (status ``pending``), rejected,
# cancelled — from the status records of KANADE_EXECS — and expired, by the reaper. Facts,
# never overwritten: the exec's status is derived from them, its creation and its results,
# so the order they are (re-)projected in cannot change it (SPEC §4.3).
exec_decisions = Table(
    "exec_decisions",
    metadata,
    Column("exec_id", ID, primary_key=True),
    Column("status", String(32), primary_key=True),
    Column("at", UtcDateTime, nullable=True),
    Column("by", String(128), nullable=True),
)

results = Table(
    "results",
    metadata,
    Column("result_id", String(64), primary_key=True),
    Column("exec_id", ID, nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("pc_id", ID, nullable=False),
    Column("job_id", ID, nullable=False),
    Column("version", String(128), nullable=False),
    # in_flight | finished | reaped | no_result (an expected pc that never started)
    Column("state", String(16), nullable=False),
    Column("exit_code", Integer, nullable=True),
    Column("skipped", Boolean, nullable=False, default=False),
    Column("stdout", CleanText, nullable=False, default=""),
    Column("stderr", CleanText, nullable=False, default=""),
    Column("stdout_bytes", BigInteger, nullable=False, default=0),
    Column("stderr_bytes", BigInteger, nullable=False, default=0),
    Column("stdout_ref", String(255), nullable=True),
    Column("stderr_ref", String(255), nullable=True),
    Column("started_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, default=1),
    Column("note", CleanText, nullable=True),
    Column("schedule_id", ID, nullable=True),
    Column("nominal_time", UtcDateTime, nullable=True),
    # The stream's publish time of the message that last changed the row, so
    # re-projecting a wiped DB reproduces the same value.
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("timeout_s", Float, nullable=True),
    # When an in_flight row is reaped (kanade.core.lifecycle; revision 0002).
    Column("expires_at", UtcDateTime, nullable=True),
    Index("ix_results_exec_id_pc_id", "exec_id", "pc_id"),
    Index("ix_results_pc_id_recorded_at", "pc_id", "recorded_at"),
    Index("ix_results_job_id_recorded_at", "job_id", "recorded_at"),
    Index("ix_results_recorded_at", "recorded_at"),
    Index("ix_results_state_recorded_at", "state", "recorded_at"),
    Index("ix_results_state_expires_at", "state", "expires_at"),
)

projection_state = Table(
    "projection_state",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# --- revision 0002: audit, inventory, checks (projections) and users ------------------

audit = Table(
    "audit",
    metadata,
    # The KANADE_AUDIT stream sequence: a replay after a wipe writes the same keys.
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("action", String(128), nullable=False),
    # Whoever the record names, even a failed login's made-up user name: NUL-free for
    # PostgreSQL, so the attempt is still recorded there.
    Column("actor", CleanString(128), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("details", JSON, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Index("ix_audit_recorded_at", "recorded_at"),
    Index("ix_audit_actor_recorded_at", "actor", "recorded_at"),
    Index("ix_audit_action_recorded_at", "action", "recorded_at"),
)

# Latest facts per (pc, job); every accepted report is also kept in the history.
inventory = Table(
    "inventory",
    metadata,
    Column("pc_id", ID, primary_key=True),
    Column("job_id", ID, primary_key=True),
    Column("version", String(128), nullable=False),
    Column("facts", JSON, nullable=False),
    Column("result_id", String(64), nullable=False),
    Column("exec_id", ID, nullable=False),
    # The agent's finished_at (when the facts were true) orders reports of one pc.
    Column("observed_at", UtcDateTime, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Index("ix_inventory_job_id", "job_id"),
)

inventory_history = Table(
    "inventory_history",
    metadata,
    Column("result_id", String(64), primary_key=True),
    Column("pc_id", ID, nullable=False),
    Column("job_id", ID, nullable=False),
    Column("version", String(128), nullable=False),
    Column("facts", JSON, nullable=False),
    Column("exec_id", ID, nullable=False),
    Column("observed_at", UtcDateTime, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Index("ix_inventory_history_pc_id_job_id_observed_at", "pc_id", "job_id", "observed_at"),
    # Retention prunes the oldest first (revision 0012).
    Index("ix_inventory_history_recorded_at", "recorded_at"),
)

checks = Table(
    "checks",
    metadata,
    Column("pc_id", ID, primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("job_id", ID, nullable=False),
    Column("version", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # ok | warn | fail | unknown
    Column("detail", CleanText, nullable=False),
    Column("result_id", String(64), nullable=False),
    Column("exec_id", ID, nullable=False),
    Column("observed_at", UtcDateTime, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Index("ix_checks_status", "status"),
    Index("ix_checks_name", "name"),
)

# Users are the one table that is NOT a projection: there is no stream to rebuild
# them from, so a wiped database needs ``kanade-backend user add`` again.
users = Table(
    "users",
    metadata,
    Column("username", String(128), primary_key=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),  # viewer | operator | admin
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    # A disabled user (revision 0014) cannot log in and their tokens stop working at once.
    Column("disabled_at", UtcDateTime, nullable=True),
    Column("disabled_by", String(128), nullable=True),
)

# --- revision 0003: the central scheduler's bookkeeping ------------------------------------
# Not a projection (there is no stream of scheduler decisions): counters of fired, skipped
# and missed occurrences per schedule, and a short log of recent decisions with reasons.
# Losing them (a wiped DB) loses history only; occurrence identity lives in the exec rows.

schedule_stats = Table(
    "schedule_stats",
    metadata,
    Column("schedule_id", ID, primary_key=True),
    Column("fired", BigInteger, nullable=False, default=0),
    Column("skipped", BigInteger, nullable=False, default=0),
    Column("missed", BigInteger, nullable=False, default=0),
    Column("last_fire_at", UtcDateTime, nullable=True),  # when the last fire was dispatched
    Column("last_nominal", UtcDateTime, nullable=True),  # its nominal time
    Column("last_exec_id", ID, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
)

schedule_decisions = Table(
    "schedule_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("schedule_id", ID, nullable=False),
    Column("occurrence_id", String(255), nullable=False),
    Column("nominal_time", UtcDateTime, nullable=True),
    Column("decided_at", UtcDateTime, nullable=False),
    Column("result", String(16), nullable=False),  # fired | skipped | missed | duplicate
    Column("reason", String(64), nullable=True),
    Column("detail", Text, nullable=True),
    Column("exec_id", ID, nullable=True),
    Column("pcs", Integer, nullable=True),
    Column("lateness_s", Float, nullable=True),
    Index("ix_schedule_decisions_schedule_id_id", "schedule_id", "id"),
)

# Scheduler reads: a schedule's execs (in-flight, cascade kill, last fire) and the last
# result / success per pc of a schedule (per_pc / per_target dedup).
Index("ix_executions_schedule_id_status", executions.c.schedule_id, executions.c.status)
Index("ix_results_schedule_id_pc_id", results.c.schedule_id, results.c.pc_id)

# --- revision 0004: durable rollouts and approvals (SPEC §4.7, §4.8) -----------------------
# Not projections: operator decisions and the rollout's progress have no stream to be
# rebuilt from (like ``users``). Written by kanade.backend.store.rollouts / .approvals.

rollouts = Table(
    "rollouts",
    metadata,
    Column("rollout_id", ID, primary_key=True),  # = the exec_id it sends
    Column("exec_id", ID, nullable=False),
    Column("job_id", ID, nullable=False),
    Column("version", String(128), nullable=False),
    # awaiting_approval | running | halted | aborted | completed | rejected
    Column("status", String(32), nullable=False),
    Column("halt_on_failure_rate", Float, nullable=True),
    Column("current_wave", Integer, nullable=False),
    Column("wave_count", Integer, nullable=False),
    Column("spec", JSON, nullable=False),  # the requested waves, as written
    Column("command", Text, nullable=False),  # the command template (wire JSON)
    Column("starting_deadline_s", Float, nullable=True),
    Column("settle_after_s", Float, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("reason", Text, nullable=True),  # why halted / aborted
    Index("ix_rollouts_status", "status"),
)

rollout_waves = Table(
    "rollout_waves",
    metadata,
    Column("rollout_id", ID, primary_key=True),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),  # group | pcs | percent | rest
    Column("label", String(255), nullable=False),
    Column("pcs", JSON, nullable=False),  # fixed when the rollout is created
    Column("delay_s", Float, nullable=False),
    # waiting | dispatching | dispatched | settled | cancelled
    Column("state", String(16), nullable=False),
    Column("due_at", UtcDateTime, nullable=True),
    Column("request_id", String(64), nullable=False),
    Column("command", Text, nullable=True),  # the exact bytes published (set at claim)
    Column("claimed_at", UtcDateTime, nullable=True),
    Column("dispatched_at", UtcDateTime, nullable=True),
    Column("settled_at", UtcDateTime, nullable=True),
    Column("succeeded", Integer, nullable=True),
    Column("failed", Integer, nullable=True),
    Column("skipped", Integer, nullable=True),
    Column("missing", Integer, nullable=True),
    Column("failure_rate", Float, nullable=True),
    Column("verdict", String(16), nullable=True),  # ok | exceeded
)

approvals = Table(
    "approvals",
    metadata,
    Column("exec_id", ID, primary_key=True),
    Column("job_id", ID, nullable=False),
    Column("version", String(128), nullable=False),
    Column("state", String(16), nullable=False),  # pending | approved | rejected
    Column("requested_by", String(128), nullable=False),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("decided_by", String(128), nullable=True),
    Column("decided_at", UtcDateTime, nullable=True),
    Column("reason", Text, nullable=True),
    Column("command", Text, nullable=False),  # template at request; exact bytes once approved
    Column("subjects", JSON, nullable=False),  # empty for a rollout (its waves publish)
    Column("starting_deadline_s", Float, nullable=True),
    Column("rollout", Boolean, nullable=False),
    Column("dispatched_at", UtcDateTime, nullable=True),
    Index("ix_approvals_state_expires_at", "state", "expires_at"),
)

unattended_approvals = Table(
    "unattended_approvals",
    metadata,
    Column("job_id", ID, primary_key=True),
    Column("version", String(128), primary_key=True),
    Column("approved_by", String(128), nullable=False),
    Column("approved_at", UtcDateTime, nullable=False),
)

# --- revision 0008: a wiped database comes back whole (SPEC §1.3) ---------------------------
# Keys of operator-state rows (users, approvals, rollouts, schedule counters) changed since
# their document was last written to KV ``kanade_state``, in the transaction that changed
# them; the state publisher drains it (kanade.backend.workers.state_sync).
state_outbox = Table(
    "state_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(512), nullable=False),  # the document's KV key
    Column("kind", String(32), nullable=False),
    Column("ref", JSON, nullable=False),  # the row's key parts
    Index("ix_state_outbox_key", "key"),
    # Ids never reused, also once the table is empty again: an id is a document's ``seq``.
    sqlite_autoincrement=True,
)

# Decisions of agents' local schedulers (``runs_on: agent``; SPEC §3.6, §4.4), projected
# from KANADE_DECISIONS: a short log per schedule, and each pc's running totals (the newest
# a report carried, per epoch of the pc's decision file), which the counters add up.
agent_schedule_decisions = Table(
    "agent_schedule_decisions",
    metadata,
    Column("decision_id", String(512), primary_key=True),  # pc:occurrence:result
    Column("schedule_id", ID, nullable=False),
    Column("pc_id", ID, nullable=False),
    Column("occurrence_id", String(255), nullable=False),
    Column("nominal_time", UtcDateTime, nullable=True),
    Column("decided_at", UtcDateTime, nullable=False),  # the agent's clock
    Column("result", String(16), nullable=False),  # fired | skipped | missed
    Column("reason", String(64), nullable=True),
    Column("detail", Text, nullable=True),
    Column("count", Integer, nullable=False),
    Column("request_id", String(64), nullable=True),
    Column("recorded_at", UtcDateTime, nullable=False),  # the stream's time
    Index("ix_agent_schedule_decisions_schedule_id_recorded_at", "schedule_id", "recorded_at"),
)

agent_schedule_stats = Table(
    "agent_schedule_stats",
    metadata,
    Column("schedule_id", ID, primary_key=True),
    Column("pc_id", ID, primary_key=True),
    Column("epoch", String(64), primary_key=True),
    Column("fired", BigInteger, nullable=False, default=0),
    Column("skipped", BigInteger, nullable=False, default=0),
    Column("missed", BigInteger, nullable=False, default=0),
    Column("last_fire_at", UtcDateTime, nullable=True),
    Column("last_nominal", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Enrolment (SPEC §8.1): one-time tokens an admin hands to a machine, and the identity
# each enrolled pc got. Not a projection: this is the backend's own record of which
# broker credential belongs to which pc (what `kanade agent revoke` names).
enroll_tokens = Table(
    "enroll_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    # sha256 of the secret: the token itself is shown once and never stored.
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("groups", JSON, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    Column("used_by_pc", ID, nullable=True),
    Column("cancelled", Boolean, nullable=False, default=False),
)

enrolled_agents = Table(
    "enrolled_agents",
    metadata,
    Column("pc_id", ID, primary_key=True),
    Column("public_key", String(64), nullable=False),  # the nkey user key ('U…')
    Column("enrolled_at", UtcDateTime, nullable=False),
    Column("token_id", String(32), nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("revoked_by", String(128), nullable=True),
)

# --- revision 0006: every exec ends (SPEC §4.3) -------------------------------------------
# The reaper's closing pass looks for execs not yet ended whose deadline has come.
Index("ix_executions_ended_at_deadline_at", executions.c.ended_at, executions.c.deadline_at)

# --- revision 0009: session revocation (SPEC §4.10, issue #15) -----------------------------
# Not a projection: a logged-out token (by its jti) until it would have expired anyway, and
# per user the instant before which every token is void ("log out everywhere", a password
# or role change by an admin). Both are small: revoked tokens are pruned at their expiry.
revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("username", String(128), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_revoked_tokens_expires_at", "expires_at"),
)

session_cutoffs = Table(
    "session_cutoffs",
    metadata,
    Column("username", String(128), primary_key=True),
    Column("not_before", UtcDateTime, nullable=False),
)

# --- revision 0011: notifications (webhooks; docs/notifications.md) -------------------------
# Webhooks are operator state (mirrored in KV ``kanade_state``: a wiped database gets them
# back); events and deliveries are this database's own work queue (lost with it).
webhooks = Table(
    "webhooks",
    metadata,
    Column("webhook_id", ID, primary_key=True),
    Column("kind", String(16), nullable=False),  # generic | slack
    Column("url", String(2048), nullable=False),  # a Slack URL is a secret: never shown whole
    Column("secret", String(256), nullable=True),  # HMAC key (generic); never shown
    Column("events", JSON, nullable=False),  # subscribed event kinds
    Column("enabled", Boolean, nullable=False),
    Column("offline_after_s", Float, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("updated_by", String(128), nullable=False),
)

# One row per fact worth telling (an exec that failed, a halted rollout, …), keyed by the
# fact: detecting it again changes nothing. ``fanned_out`` once its deliveries exist.
notify_events = Table(
    "notify_events",
    metadata,
    Column("event_id", String(32), primary_key=True),
    Column("key", String(600), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("detected_at", UtcDateTime, nullable=False),
    Column("summary", String(300), nullable=False),
    Column("details", JSON, nullable=False),
    Column("threshold_s", Float, nullable=True),  # agent.offline: the offline_after used
    Column("fanned_out", Boolean, nullable=False, default=False, server_default=false()),
    Index("ix_notify_events_fanned_out_detected_at", "fanned_out", "detected_at"),
    Index("ix_notify_events_detected_at", "detected_at"),
)

# The outbox: one notification (one or more events of one kind) to one webhook, tried until
# delivered or out of attempts. The id is derived from the webhook and the events, and is
# the payload's idempotency key.
notify_deliveries = Table(
    "notify_deliveries",
    metadata,
    Column("delivery_id", String(32), primary_key=True),
    Column("webhook_id", ID, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("event_ids", JSON, nullable=False),
    Column("summary", String(300), nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("last_attempt_at", UtcDateTime, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(300), nullable=True),
    Column("delivered_at", UtcDateTime, nullable=True),
    Column("attempt_log", JSON, nullable=False),  # the last few attempts, newest last
    Index("ix_notify_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    Index("ix_notify_deliveries_webhook_id_created_at", "webhook_id", "created_at"),
    Index("ix_notify_deliveries_created_at", "created_at"),
)

# What the event detector scans for changes since its last pass.
Index("ix_executions_status_updated_at", executions.c.status, executions.c.updated_at)
Index("ix_schedule_decisions_decided_at", schedule_decisions.c.decided_at)
Index("ix_agent_schedule_decisions_recorded_at", agent_schedule_decisions.c.recorded_at)

# --- revision 0012: retention (SPEC §4.12) -----------------------------------------------
# The newest success and the newest result of each (schedule, pc) among *pruned* results:
# per_pc / per_target schedules decide from the last success (store.scheduling), which must
# outlive the rows retention deletes. Read together with what the results table still has.
schedule_pc_last = Table(
    "schedule_pc_last",
    metadata,
    Column("schedule_id", ID, primary_key=True),
    Column("pc_id", ID, primary_key=True),
    Column("last_success_at", UtcDateTime, nullable=True),
    Column("last_result_at", UtcDateTime, nullable=True),
)

# --- revision 0014: script text (issue #18) ------------------------------------------------
# Inline scripts' text, one row per distinct script (``executions.script_sha256`` names it),
# bounded by kanade.core.scripttext.SCRIPT_TEXT_MAX; projected from the exec records, so a
# wiped database gets it back. Readable by operators only (the text may hold secrets).
scripts = Table(
    "scripts",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("text", Text, nullable=False),
    Column("size", BigInteger, nullable=False),  # bytes of the whole script
    Column("truncated", Boolean, nullable=False, default=False),
    Column("first_seen", UtcDateTime, nullable=False),
)
# Retention deletes a text once no exec names it: "does one?" is an index probe.
Index("ix_executions_script_sha256", executions.c.script_sha256)
