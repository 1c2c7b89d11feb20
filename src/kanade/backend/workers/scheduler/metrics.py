"""The central scheduler's Prometheus metrics: fires by result, fire lateness, leadership
and the number of schedules the leader runs."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SchedulerMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.fires = Counter(
            "kanade_schedule_fires",
            "Schedule occurrences decided by the central scheduler, by result",
            ["result"],
            registry=registry,
        )
        for result in ("fired", "skipped", "missed"):
            self.fires.labels(result=result)
        self.lateness = Histogram(
            "kanade_schedule_fire_lateness_seconds",
            "Dispatch time (commands acked by the broker) minus nominal fire time",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
            registry=registry,
        )
        self.leader = Gauge(
            "kanade_scheduler_leader",
            "1 while this backend holds the scheduler lease",
            registry=registry,
        )
        self.schedules = Gauge(
            "kanade_scheduler_schedules",
            "Enabled runs_on: backend schedules the leader is running",
            registry=registry,
        )
