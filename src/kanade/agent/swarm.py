"""Swarm mode: many agent identities in one process, for scale tests and benchmarks (SPEC §10.1).

Each identity is a full :class:`~kanade.agent.runtime.Agent` — its own pc_id,
groups, durable command consumer, admission ledger, outbox and heartbeats —
running the same intake / gates / ledger / outbox code as a real agent. What
the identities share is what a real fleet would not need to share but one
process must: one NATS connection, one mirror of the fleet state in KV, one
kill subscription. The script step can be an instant stub (``exec="stub"``)
so the benchmark measures kanade, not ``fork``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nats.aio.client import Client
from nats.aio.msg import Msg

from kanade.agent.control import kill_request_exec_id
from kanade.agent.executor import RunContext, Runner, subprocess_runner
from kanade.agent.fleet.state import FleetState
from kanade.agent.intake import create_consumer
from kanade.agent.process import Capture, ProcessOutcome
from kanade.agent.runtime import Agent
from kanade.agent.settings import AgentSettings, env_keyring
from kanade.agent.trust import Trust, default_keyring_path
from kanade.bus.connection import connect
from kanade.bus.control import subscribe_control
from kanade.bus.credentials import BusCredentials
from kanade.core import subjects
from kanade.core.models.wire import Command

log = logging.getLogger("kanade.swarm")

ExecMode = Literal["stub", "real"]


async def stub_runner(cmd: Command, argv: list[str], ctx: RunContext) -> ProcessOutcome:
    """An instant, successful "script": exercises everything around the process."""
    now = ctx.clock()
    out = b"ok\n"
    return ProcessOutcome(
        exit_code=0,
        stdout=Capture(out, len(out), None),
        stderr=Capture(b"", 0, None),
        started_at=now,
        finished_at=now,
        note=None,
    )


def _tune_gc_for_a_big_heap() -> None:
    """Keep CPython's cycle collector from walking 10 000 agents' state over and over.

    A real agent's heap is small, so a full collection costs it next to nothing. The
    swarm holds every identity's heap in one process (millions of objects at 10 000),
    and each full collection walks all of it: measured at 0.5-1 s each, a third of
    the swarm's CPU during a fan-out. That is an artefact of simulating a fleet in
    one process, so the swarm (only) moves what start-up built into the permanent
    generation and collects the young generations less often; cycles are still
    collected, just in fewer, cheaper passes.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 1_000)


@dataclass
class SwarmSpec:
    agents: int
    nats_urls: list[str]
    data_dir: Path
    # One broad identity for every simulated agent (security.permissions
    # swarm_permissions): it may create the identities' command consumers itself.
    credentials: BusCredentials
    prefix: str = "sim-"
    exec_mode: ExecMode = "stub"
    # Identity i is in group "<prefix>g<i % groups>" when groups > 0, plus every
    # name in extra_groups.
    groups: int = 0
    extra_groups: list[str] = field(default_factory=list)
    heartbeat_interval: float = 30.0
    durable: bool = False
    start_batch: int = 200
    max_local_concurrent: int = 4
    # Identities per NATS connection. One socket for thousands of identities gets
    # cut by the broker as a slow consumer (write deadline) when the process is
    # busy; several smaller ones each stay under it.
    per_connection: int = 500
    # How long a pull may stay silent before it is presumed lost (twice this): longer than
    # a real agent's 5 s, so 10 000 identities' idle pulls cost the broker little.
    pull_idle_heartbeat: float = 30.0
    # The pinned keyring every identity trusts: $KANADE_AGENT_KEYRING, else
    # <data_dir>/trust/keyring.json.
    keyring: Path | None = field(default_factory=env_keyring)


class Swarm:
    def __init__(self, spec: SwarmSpec) -> None:
        self.spec = spec
        self.nc: Client | None = None  # connection 0: fleet state and control
        self.connections: list[Client] = []
        # One keyring for every identity; verdicts cached by exact bytes, so a fleet-wide
        # command reaching 10 000 identities is verified once.
        self.trust = Trust(spec.keyring or default_keyring_path(spec.data_dir), cache=True)
        self.fleet = FleetState(trust=self.trust)  # whole buckets, shared by every identity
        self.agents: list[Agent] = []
        self._state_listeners: dict[int, list[Callable[[str], None]]] = {}
        self._stop = asyncio.Event()
        self.started_in: float | None = None
        self._resync_task: asyncio.Future[None] | None = None
        # How often the script step ran, per result id (attempts of a retry count too).
        self.executions: Counter[str] = Counter()

    def _identity(self, i: int) -> AgentSettings:
        spec = self.spec
        pc_id = f"{spec.prefix}{i}"
        groups = list(spec.extra_groups)
        if spec.groups > 0:
            groups.append(f"{spec.prefix}g{i % spec.groups}")
        return AgentSettings(
            pc_id=pc_id,
            nats_urls=spec.nats_urls,
            data_dir=spec.data_dir / pc_id,
            groups=groups,
            heartbeat_interval=spec.heartbeat_interval,
            max_local_concurrent=spec.max_local_concurrent,
            durable=spec.durable,
            pull_expires=120.0,
            pull_idle_heartbeat=spec.pull_idle_heartbeat,
        )

    def _state_fanout(self, index: int) -> Callable[[str], None]:
        def on_state(state: str) -> None:
            for listener in self._state_listeners.get(index, []):
                listener(state)
            if index == 0 and state == "reconnected" and self.nc is not None:
                self._resync_task = asyncio.ensure_future(self.fleet.resync(self.nc))

        return on_state

    def _connector_for(self, i: int) -> Callable[[Callable[[str], None]], Any]:
        index = i // self.spec.per_connection

        async def connector(on_state: Callable[[str], None]) -> Client:
            self._state_listeners.setdefault(index, []).append(on_state)
            return self.connections[index]

        return connector

    async def _on_kill(self, msg: Msg) -> None:
        exec_id = kill_request_exec_id(msg.data)
        if exec_id is None:
            return
        for agent in self.agents:
            agent.kill_exec(exec_id)

    async def run(self, *, on_ready: Callable[[Swarm], None] | None = None) -> None:
        t0 = time.monotonic()
        spec = self.spec
        # Many identities share this one connection: give it a large buffer.
        for index in range(max(1, -(-spec.agents // spec.per_connection))):
            nc = await connect(
                spec.nats_urls,
                name=f"kanade-swarm:{spec.prefix}:{index}",
                on_state=self._state_fanout(index),
                pending_size=64 * 1024 * 1024,
                credentials=spec.credentials,
            )
            self.connections.append(nc)
        self.nc = self.connections[0]
        await subscribe_control(self.nc, subjects.KILL_SUBJECT, self._on_kill)
        await self.fleet.resync(self.nc)
        script_step: Runner = stub_runner if spec.exec_mode == "stub" else subprocess_runner

        async def runner(cmd: Command, argv: list[str], ctx: RunContext) -> ProcessOutcome:
            # Counted per result id (one per command per pc): fault tests prove from
            # this that no command ran twice, whatever the broker went through.
            self.executions[ctx.spool_name] += 1
            return await script_step(cmd, argv, ctx)

        tasks: list[asyncio.Task[None]] = []
        # Start in batches: thousands of consumer creations at once would only
        # time out against the JetStream API and retry.
        for start in range(0, spec.agents, spec.start_batch):
            batch = [
                Agent(
                    self._identity(i),
                    runner=runner,
                    fleet=self.fleet,
                    connector=self._connector_for(i),
                    # The swarm's credential may create consumers; asking a backend for
                    # thousands at start-up would only measure the request round trips.
                    provisioning=create_consumer,
                    trust=self.trust,
                )
                for i in range(start, min(spec.agents, start + spec.start_batch))
            ]
            self.agents.extend(batch)
            tasks.extend(asyncio.ensure_future(a.run()) for a in batch)
            await asyncio.gather(*(a.ready.wait() for a in batch))
        self.started_in = time.monotonic() - t0
        _tune_gc_for_a_big_heap()
        log.info("swarm of %d identities ready in %.1fs", len(self.agents), self.started_in)
        if on_ready is not None:
            on_ready(self)
        await self._stop.wait()
        for a in self.agents:
            a.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        for nc in self.connections:
            if not nc.is_closed:
                await nc.drain()

    def stop(self) -> None:
        self._stop.set()
