"""Prometheus metrics of one backend app (its own registry, so several apps can
live in one process — tests — without clashing on metric names)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


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
        self.broker_connected = Gauge(
            "kanade_broker_connected",
            "1 while the backend is connected to the broker",
            registry=self.registry,
        )

    def on_projected(self, consumer: str, n: int) -> None:
        self.projected.labels(consumer=consumer).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
