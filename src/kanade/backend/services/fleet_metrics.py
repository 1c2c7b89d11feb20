"""Gauges read at scrape time: projector lag per consumer, execs and agents by status, agents
with a full disk, schedule decisions (the central scheduler's and the agents'), the
operator-state backlog and the notification deliveries waiting to be sent.

Computed when ``/metrics`` is scraped instead of maintained on every write: they are
states, a scrape every few seconds is cheap, and nothing on the hot path pays for them.
A broker that is away only leaves the lag gauges at their last values.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from sqlalchemy.engine import Connection

from kanade.backend.messaging.consumers import PROJECTION_CONSUMERS
from kanade.backend.services.container import Services
from kanade.backend.store import (
    agent_decisions,
    agents,
    deliveries,
    executions,
    scheduling,
    state_outbox,
)
from kanade.core.instants import Clock, system_clock
from kanade.core.statuses import ExecStatus


def _db_counts(
    conn: Connection, now: datetime
) -> tuple[dict[str, int], dict[str, int], tuple[int, int]]:
    return (
        executions.count_by_status(conn),
        agents.count_by_liveness(conn, now),
        agents.disk_trouble(conn, now),
    )


def _decisions(conn: Connection) -> tuple[dict[str, dict[str, int]], int, int]:
    by_source = {"backend": scheduling.totals(conn), "agent": agent_decisions.totals(conn)}
    return by_source, state_outbox.backlog(conn), deliveries.backlog(conn)


async def refresh(services: Services, *, clock: Clock = system_clock) -> None:
    m = services.metrics
    now = clock()
    execs, fleet, (disk_full, held) = await services.db.read(lambda conn: _db_counts(conn, now))
    # Every status gets a gauge (0 included), then any unknown one found in the table.
    for status in (*ExecStatus, *execs):
        m.execs_by_status.labels(status=status).set(execs.get(status, 0))
    for status in ("alive", "stale", "offline"):
        m.agents_by_status.labels(status=status).set(fleet.get(status, 0))
    m.agents_disk_full.set(disk_full)
    m.agents_held_messages.set(held)
    by_source, backlog, notify_backlog = await services.db.read(_decisions)
    for runs_on, counts in by_source.items():
        for result, n in counts.items():
            m.schedule_decisions.labels(runs_on=runs_on, result=result).set(n)
    m.state_backlog.set(backlog)
    m.notify_backlog.set(notify_backlog)
    if not services.link.connected:
        return
    with contextlib.suppress(Exception):  # a scrape must never fail on the broker
        js = services.link.bus().js
        seen: set[str] = set()
        for spec in PROJECTION_CONSUMERS:
            info = await js.consumer_info(spec.stream, spec.durable)
            lag = (info.num_pending or 0) + (info.num_ack_pending or 0)
            m.projector_lag.labels(consumer=spec.durable).set(lag)
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            m.projector_last_seq.labels(consumer=spec.durable).set(floor or 0)
            if spec.stream not in seen:
                seen.add(spec.stream)
                stream = await js.stream_info(spec.stream)
                m.stream_last_seq.labels(stream=spec.stream).set(stream.state.last_seq)
