"""Prometheus metrics of one backend app (its own registry, so several apps can
live in one process — tests — without clashing on metric names)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

IDENTITY_KINDS = ("result", "started", "heartbeat", "decision")


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
            "Results, started events, heartbeats and schedule decisions dropped: payload "
            "pc_id is not the subject's (the identity the broker authenticated)",
            ["kind"],
            registry=self.registry,
        )
        for kind in IDENTITY_KINDS:
            self.identity_mismatch.labels(kind=kind)  # exported as 0 from the start
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

    def on_reap(self, report: Any) -> None:
        self.reaped.inc(len(report.reaped))
        self.expired.inc(len(report.expired))
        self.no_result.inc(report.no_result)

    def on_identity_mismatch(self, kind: str) -> None:
        self.identity_mismatch.labels(kind=kind).inc()

    def on_projected(self, consumer: str, n: int) -> None:
        self.projected.labels(consumer=consumer).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
