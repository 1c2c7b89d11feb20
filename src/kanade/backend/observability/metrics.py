"""Prometheus metrics of one backend app (its own registry, so several apps can
live in one process — tests — without clashing on metric names)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from kanade.core.retention import TABLES

IDENTITY_KINDS = ("result", "started", "heartbeat", "decision", "live")
LIVE_OUTCOMES = ("relayed", "refused", "dropped")
DROPPED_KINDS = ("results", "execs", "audit", "heartbeat")
DROP_REASONS = ("invalid", "unwritable")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.projected = Counter(
            "kanade_projected_messages",
            "Messages projected into SQL, by consumer",
            ["consumer"],
            registry=self.registry,
        )
        self.execs = Counter(
            "kanade_execs_created",
            "Executions dispatched, by kind",
            ["kind"],
            registry=self.registry,
        )
        # SPEC §8.1: the broker lets an agent publish only under its own pc_id; a payload
        # naming another pc is a forgery attempt (or a bug), dropped and counted here.
        self.identity_mismatch = Counter(
            "kanade_identity_mismatch",
            "Results, started events, heartbeats, schedule decisions and live-output chunks "
            "dropped: payload pc_id is not the subject's (the identity the broker "
            "authenticated)",
            ["kind"],
            registry=self.registry,
        )
        for kind in IDENTITY_KINDS:
            self.identity_mismatch.labels(kind=kind)  # exported as 0 from the start
        # Live output (SPEC §4.12): chunks relayed to watchers, refused (too large, malformed,
        # not the subject's pc or exec), dropped for a watcher that read too slowly.
        self.live_chunks = Counter(
            "kanade_live_chunks",
            "Live-output chunks: relayed to watchers, refused, or dropped for a slow watcher",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in LIVE_OUTCOMES:
            self.live_chunks.labels(outcome=outcome)
        self.live_watchers = Gauge(
            "kanade_live_watchers",
            "Live-output streams open on this backend",
            registry=self.registry,
        )
        # A message that does not decode (a field out of bounds, the wrong type, not JSON)
        # or whose row the database refuses is acked and dropped, never retried: counted.
        self.dropped = Counter(
            "kanade_dropped_messages",
            "Bus messages dropped by the backend, by kind and reason (invalid: does not "
            "decode; unwritable: the database refused its row)",
            ["kind", "reason"],
            registry=self.registry,
        )
        for kind in DROPPED_KINDS:
            for reason in DROP_REASONS:
                self.dropped.labels(kind=kind, reason=reason)
        self.broker_connected = Gauge(
            "kanade_broker_connected",
            "1 while the backend is connected to the broker",
            registry=self.registry,
        )

        # Refreshed on each scrape (kanade.backend.services.fleet_metrics): state, not events.
        self.schedule_decisions = Gauge(
            "kanade_schedule_decisions",
            "Schedule occurrences by where they were decided (runs_on: backend = the central "
            "scheduler, agent = the agents' local schedulers) and result, from the database",
            ["runs_on", "result"],
            registry=self.registry,
        )
        self.state_backlog = Gauge(
            "kanade_state_backlog",
            "Operator-state changes not yet written to the broker (KV kanade_state)",
            registry=self.registry,
        )
        self.notify_backlog = Gauge(
            "kanade_notify_backlog",
            "Webhook deliveries pending (not yet delivered, not failed for good)",
            registry=self.registry,
        )
        self.projector_lag = Gauge(
            "kanade_projector_lag_messages",
            "Messages of a consumer's stream not yet projected (pending + unacked)",
            ["consumer"],
            registry=self.registry,
        )
        self.projector_last_seq = Gauge(
            "kanade_projector_last_projected_seq",
            "Stream sequence up to which a consumer has projected everything (ack floor)",
            ["consumer"],
            registry=self.registry,
        )
        self.stream_last_seq = Gauge(
            "kanade_stream_last_seq",
            "Last sequence of a stream",
            ["stream"],
            registry=self.registry,
        )
        self.execs_by_status = Gauge(
            "kanade_executions",
            "Executions in the DB, by status",
            ["status"],
            registry=self.registry,
        )
        self.agents_by_status = Gauge(
            "kanade_agents", "Known agents, by liveness", ["status"], registry=self.registry
        )
        self.agents_disk_full = Gauge(
            "kanade_agents_disk_full",
            "Alive agents whose data directory is full (they refuse new work)",
            registry=self.registry,
        )
        self.agents_held_messages = Gauge(
            "kanade_agents_held_messages",
            "Results and events alive agents hold in memory because their disk is full",
            registry=self.registry,
        )
        self.reaped = Counter(
            "kanade_reaped_results",
            "Result rows reaped (no result by their deadline)",
            registry=self.registry,
        )
        self.expired = Counter(
            "kanade_expired_execs",
            "Executions expired (still pending an hour after creation)",
            registry=self.registry,
        )
        self.no_result = Counter(
            "kanade_no_result_pcs",
            "Expected pcs closed as no_result: never started by their exec's deadline, or "
            "never sent (rejected, aborted)",
            registry=self.registry,
        )

        self.notify_attempts = Counter(
            "kanade_notify_attempts",
            "Webhook delivery attempts, by outcome: delivered, retry (due again after its "
            "backoff) or failed (out of attempts)",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("delivered", "retry", "failed"):
            self.notify_attempts.labels(outcome=outcome)

        # Retention (SPEC §4.12, docs/retention.md): what it deleted, when and how long for.
        self.retention_pruned = Counter(
            "kanade_retention_pruned_rows",
            "Rows deleted by retention, by table (an exec's results, decisions, approval and "
            "rollout count under their own tables)",
            ["table"],
            registry=self.registry,
        )
        self.retention_objects = Counter(
            "kanade_retention_deleted_objects",
            "Output objects (the outputs store) deleted with the results retention pruned",
            registry=self.registry,
        )
        self.retention_runs = Counter(
            "kanade_retention_runs",
            "Retention passes, by outcome (ok, failed)",
            ["outcome"],
            registry=self.registry,
        )
        self.retention_last_run = Gauge(
            "kanade_retention_last_run_timestamp_seconds",
            "When the last retention pass ended (Unix time; 0 = none yet)",
            registry=self.registry,
        )
        self.retention_last_duration = Gauge(
            "kanade_retention_last_run_duration_seconds",
            "How long the last retention pass took, pauses between batches included",
            registry=self.registry,
        )
        self.retention_batch = Histogram(
            "kanade_retention_batch_seconds",
            "Time each retention batch held the database writer (projector writes wait at "
            "most this long)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        for outcome in ("ok", "failed"):
            self.retention_runs.labels(outcome=outcome)
        for table in TABLES:
            self.retention_pruned.labels(table=table)  # exported as 0 from the start

    def on_notify_attempt(self, outcome: str, n: int = 1) -> None:
        self.notify_attempts.labels(outcome=outcome).inc(n)

    def on_pruned(self, table: str, rows: int) -> None:
        self.retention_pruned.labels(table=table).inc(rows)

    def on_objects_deleted(self, n: int) -> None:
        self.retention_objects.inc(n)

    def on_retention_batch(self, seconds: float) -> None:
        self.retention_batch.observe(seconds)

    def on_retention_run(self, finished_at: datetime, seconds: float, ok: bool) -> None:
        self.retention_runs.labels(outcome="ok" if ok else "failed").inc()
        if ok:
            self.retention_last_run.set(finished_at.timestamp())
            self.retention_last_duration.set(seconds)

    def on_reap(self, report: Any) -> None:
        self.reaped.inc(len(report.reaped))
        self.expired.inc(len(report.expired))
        self.no_result.inc(report.no_result)

    def on_identity_mismatch(self, kind: str) -> None:
        self.identity_mismatch.labels(kind=kind).inc()

    def on_live(self, outcome: str, n: int) -> None:
        self.live_chunks.labels(outcome=outcome).inc(n)
    def on_dropped(self, kind: str, reason: str) -> None:
        self.dropped.labels(kind=kind, reason=reason).inc()

    def on_projected(self, consumer: str, n: int) -> None:
        self.projected.labels(consumer=consumer).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
