"""The agent process: intake → gates → ledger → run → outbox, plus heartbeats and control.

Local durability comes first: everything the agent learns (an admitted
command, a finished result) is on disk before it acknowledges or publishes
anything, so the agent can crash, lose the broker or be restarted at any
instant and still run each command at most once and report every result.

This module composes the parts and runs their lifecycle; each part is its own module:
:mod:`~kanade.agent.intake`, :mod:`~kanade.agent.executor`, :mod:`~kanade.agent.fleet.view`,
:mod:`~kanade.agent.heartbeat`, :mod:`~kanade.agent.control`, :mod:`~kanade.agent.durable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from kanade import __version__
from kanade.agent.containment import Containment
from kanade.agent.control import kill_request_exec_id
from kanade.agent.durable.diskhealth import DiskHealth
from kanade.agent.durable.diskwatch import DiskWatch
from kanade.agent.durable.fsutil import private_dir
from kanade.agent.durable.ledger import Admission, Ledger
from kanade.agent.durable.outbox import Envelope, Outbox, OutboxDrain
from kanade.agent.executor import Executor, RunContext, Runner, subprocess_runner
from kanade.agent.fleet.state import FleetState
from kanade.agent.fleet.view import FleetView
from kanade.agent.heartbeat import Heartbeats
from kanade.agent.intake import (
    CommandIntake,
    ConsumerProvisioning,
    load_enrollment,
    request_consumer,
)
from kanade.agent.liveout.leases import WatchLeases
from kanade.agent.scheduling.scheduler import LocalScheduler
from kanade.agent.scripts import ScriptCache
from kanade.agent.service.statusfile import StatusReporter, status_path
from kanade.agent.settings import AgentSettings
from kanade.agent.trust import Trust
from kanade.agent.update.state import ReleaseStatus, confirm
from kanade.bus.connection import Bus, connect, until_closed
from kanade.bus.control import subscribe_control
from kanade.bus.credentials import BusCredentials, CredentialsError
from kanade.bus.retry import retry
from kanade.bus.tasks import cancel_and_wait
from kanade.core import subjects
from kanade.core.gates import KvView
from kanade.core.instants import Clock, system_clock
from kanade.core.models.wire import Command, Heartbeat, LiveWatch, WireDecodeError, decode
from kanade.core.msgids import decision_msg_id
from kanade.worker import Worker

if TYPE_CHECKING:  # loaded by the local scheduler only once it is active (idle RSS)
    from kanade.agent.liveout.publisher import LiveOutput, LiveTap
    from kanade.core.models.decisions import ScheduleDecisionReport

log = logging.getLogger("kanade.agent")

# How the agent gets its NATS connection: its own (the default), or a swarm's
# shared one. Called with the agent's connection-state callback.
Connector = Callable[[Callable[[str], None]], Awaitable[Client]]

__all__ = ["Agent", "Connector", "RunContext", "Runner", "subprocess_runner"]


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        *,
        runner: Runner = subprocess_runner,
        fleet: FleetState | None = None,
        connector: Connector | None = None,
        provisioning: ConsumerProvisioning = request_consumer,
        trust: Trust | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.s = settings
        self.pc_id = settings.pc_id
        data = private_dir(settings.data_dir)  # ledger, outbox, scripts: owner only
        # Told by every durable writer whether the disk took its write (SPEC §7).
        self.disk = DiskHealth(data)
        self.ledger = Ledger(data / "ledger", durable=settings.durable, disk=self.disk)
        self.outbox = Outbox(data / "outbox", durable=settings.durable, disk=self.disk)
        self.disk_watch = DiskWatch(self.disk, self.ledger, self.outbox)
        self.containment = Containment(data, self.pc_id, settings.containment)
        self.outbox_drain = OutboxDrain(self.outbox, self._publish, self._upload, ready=self._ready)
        spool_dir = data / "spool"
        private_dir(spool_dir)
        self.scripts = ScriptCache(data / "scripts")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self.nc: Client | None = None
        self._bus: Bus | None = None  # JetStream publishing on self.nc, made on first use
        self._owns_nc = connector is None
        self._connector = connector
        # Fleet state mirrored from KV (SPEC §3.3 gates, §3.7 config and groups).
        # A swarm passes one shared FleetState and one shared connection; it then
        # owns re-syncing them, not each identity.
        # The pinned keyring (SPEC §8.2); a swarm shares one between its identities.
        self.trust = trust or Trust(settings.keyring_path, clock=clock)
        self.fleet = fleet or FleetState(
            pc_id=self.pc_id, groups=sorted(set(settings.groups)), trust=self.trust
        )
        local_config: dict[str, Any] = {
            "heartbeat_interval": settings.heartbeat_interval,
            "max_local_concurrent": settings.max_local_concurrent,
            "log_level": settings.log_level,
            "max_output_bytes": settings.max_output_bytes,
            "live_output_bytes_per_s": settings.live_output_bytes_per_s,
            "live_output_msgs_per_s": settings.live_output_msgs_per_s,
        }
        self.fleet_view = FleetView(
            pc_id=self.pc_id,
            fleet=self.fleet,
            owns_fleet=fleet is None,
            static_groups=sorted(set(settings.groups)),
            local_config=local_config,
            state_file=data / "fleet-state.json",
            durable=settings.durable,
            on_groups_changed=self._groups_changed,
            on_config=self._apply_config,
            disk=self.disk,
        )
        # A running script's output, published while someone watches (SPEC §4.12): the
        # leases from the start, the publisher once a script first runs (idle RSS).
        self.live_leases = WatchLeases()
        self._live: LiveOutput | None = None
        self._live_cap = (settings.live_output_bytes_per_s, settings.live_output_msgs_per_s)
        self.executor = Executor(
            pc_id=self.pc_id,
            ledger=self.ledger,
            outbox=self.outbox,
            scripts=self.scripts,
            spool_dir=spool_dir,
            max_output_bytes=settings.max_output_bytes,
            max_local_concurrent=settings.max_local_concurrent,
            runner=runner,
            kv_view=self.fleet_view.kv_view,
            connection=lambda: self.nc,
            spawn=self._spawn,
            clock=clock,
            disk=self.disk,
            containment=self.containment,
            live=self._open_live,
        )
        self.intake = CommandIntake(
            pc_id=self.pc_id,
            ledger=self.ledger,
            outbox=self.outbox,
            executor=self.executor,
            trust=self.trust,
            enrolled_at=load_enrollment(data / "enrolled_at", clock),
            groups=lambda: self.groups,
            joined=lambda: self.fleet_view.joined,
            kv_groups=lambda: self.fleet_view.kv_groups,
            membership_current=self._membership_current,
            connection=lambda: self.nc,
            connected=self._ready,
            spawn=self._spawn,
            pull_expires=settings.pull_expires,
            pull_idle_heartbeat=settings.pull_idle_heartbeat,
            provisioning=provisioning,
            clock=clock,
            disk=self.disk,
        )
        # Set once the command consumer is open: the agent can receive commands.
        self.ready = self.intake.ready
        # Self-update (SPEC §3.8): the release state on disk; the updater is imported and
        # started only when the effective target version differs from this one.
        self.release = ReleaseStatus(data, __version__)
        self.restart_into: Path | None = None  # set by a self-update's switch
        self._update_task: asyncio.Task[Any] | None = None
        # The local scheduler (SPEC §3.6): fires through submit_local, learns outcomes
        # through on_finished, reports its applied set in every heartbeat.
        self.heartbeats = Heartbeats(
            pc_id=self.pc_id,
            interval=settings.heartbeat_interval,
            connection=lambda: self.nc,
            groups=lambda: self.groups,
            last_command_at=lambda: self.intake.last_command_at,
            load=lambda: (self.executor.queue_length, self.executor.running),
            schedule_set_version=lambda: self.scheduler.version,
            update=self.release.report,
            clock=clock,
            disk=self.disk,
            held_messages=lambda: self.outbox.held,
            local_config=local_config,
            static_groups=sorted(set(settings.groups)),
        )
        # The fleet learns at once when the disk fills up or has room again.
        self.disk.on_change.append(lambda _full: self.heartbeats.wake())
        self.scheduler = LocalScheduler(
            pc_id=self.pc_id,
            data_dir=data,
            fleet=self.fleet,
            submit=self.submit_local,
            groups=lambda: self.groups,
            connection=lambda: self.nc,
            in_flight=self.executor.in_flight,
            on_applied=lambda _version: self.heartbeats.wake(),
            report=self._report_decision,
            durable=settings.durable,
            clock=clock,
            reconcile_poll=timedelta(seconds=settings.reconcile_poll),
        )
        self.scheduler.store.disk = self.disk
        self.executor.on_finished.append(self.scheduler.on_finished)
        # What `kanade-agent status` reads (a machine agent only: not each swarm identity).
        self.status_file = StatusReporter(
            status_path(data),
            pc_id=self.pc_id,
            connected=self._ready,
            last_heartbeat=lambda: self.heartbeats.last_sent_at,
            clock=clock,
        )

    # --- what other parts read ----------------------------------------------------------------
    @property
    def groups(self) -> list[str]:
        """This agent's groups: its static ones and those KV lists for it."""
        return self.fleet_view.groups

    @property
    def last_command_at(self) -> datetime | None:
        return self.intake.last_command_at

    @property
    def queue_length(self) -> int:
        return self.executor.queue_length

    @property
    def running(self) -> int:
        return self.executor.running

    def kv_view(self) -> KvView:
        return self.fleet_view.kv_view()

    def heartbeat(self) -> Heartbeat:
        return self.heartbeats.build()

    def _report_decision(self, report: ScheduleDecisionReport) -> None:
        """A local schedule decision, through the outbox like a result (SPEC §3.5)."""
        self.outbox.put(
            Envelope(
                subjects.decision_subject(self.pc_id, report.schedule_id),
                decision_msg_id(report.decision_id),
                report.encode(),
            )
        )

    def submit_local(self, cmd: Command) -> Admission:
        """Admit a command fired on this agent (see :meth:`CommandIntake.submit`)."""
        return self.intake.submit(cmd)

    def kill_exec(self, exec_id: str) -> None:
        """End every running or queued command of ``exec_id`` (see :meth:`Executor.kill_exec`)."""
        self.executor.kill_exec(exec_id)

    # --- lifecycle ----------------------------------------------------------------------------
    async def run(self) -> None:
        log.info("agent %s starting (groups: %s)", self.pc_id, ",".join(self.groups) or "-")
        log.info(self.containment.describe())
        self.ledger.load()
        self.fleet_view.restore()  # before recovery: pending commands meet the gates
        self.executor.recover()
        if self.fleet_view.owns_fleet:  # a swarm's shared state is not persisted per identity
            self._spawn(self.fleet_view.state_file.run())
        self._spawn(self.outbox_drain.run())
        self._spawn(self.disk_watch.run())
        self._spawn(self._connect_and_serve())
        self._spawn(self.scheduler.run())
        self._spawn(self.heartbeats.run())
        self._spawn(LedgerPruner(self.ledger).run())
        if self._owns_nc:
            self._spawn(self.status_file.run())
        await self._stop.wait()
        await self._shutdown()

    def stop(self) -> None:
        self._stop.set()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("agent task failed", exc_info=task.exception())

    async def _shutdown(self) -> None:
        # First the goodbye: from now on the backend shows this agent offline and no new
        # exec expects a result from it (a stopped agent is not "alive" for 2 more minutes).
        if await self.heartbeats.goodbye():
            log.info("agent %s told the backend it is stopping", self.pc_id)
        self.scheduler.stop()  # no new local fires while shutting down
        # Scripts still running are ended; their ledger entries stay "launching"
        # only if we die before reporting, otherwise they report -1 as killed.
        await self.executor.stop(timeout=10)
        # Give the outbox a last chance to flush what is ready.
        if self._ready():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.outbox.drain_once(self._publish, self._upload), 5)
        if self._live is not None:
            self._live.stop()
        # Cancelled until they end: a task cancelled inside nats-py's flush (the broker
        # unreachable) swallows one cancel and carries on, and a plain gather waited for it.
        await cancel_and_wait(list(self._tasks))
        await self.intake.close()
        if self._owns_nc and self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()
        self.ledger.flush_backlog()  # a last chance for what the disk refused
        self.outbox.persist()
        if self.ledger.backlog or self.outbox.held:
            log.error(
                "stopping with %d result message(s) and %d ledger line(s) the full disk never "
                "took: they are lost",
                self.outbox.held,
                self.ledger.backlog,
            )
        self.ledger.close()
        self.containment.close()
        log.info("agent %s stopped", self.pc_id)

    # --- bus ----------------------------------------------------------------------------------
    def _ready(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    def _on_state(self, state: str) -> None:
        self.status_file.wake()
        if state in ("connected", "reconnected"):
            self.fleet_view.connected()
            self.outbox_drain.wake()
            if state == "reconnected":
                self._spawn(self._resync())
                self._spawn(self.heartbeats.send())
                # A broker restart drops the (memory-backed) command consumer.
                self.intake.consumer_gone()
        elif state in ("disconnected", "closed"):
            self.fleet_view.disconnected()

    async def _publish(self, subject: str, data: bytes, msg_id: str) -> None:
        assert self.nc is not None
        if self._bus is None:
            self._bus = Bus(self.nc)
        await self._bus.publish_js(subject, data, msg_id=msg_id, timeout=5.0)

    def _open_live(self, exec_id: str) -> LiveTap | None:
        """A tap for one run of ``exec_id`` (the publisher is made on first use)."""
        if self._live is None:
            from kanade.agent.liveout.publisher import LiveOutput

            bytes_per_s, msgs_per_s = self._live_cap
            self._live = LiveOutput(
                self.pc_id,
                self._publish_live,
                bytes_per_s=bytes_per_s,
                msgs_per_s=msgs_per_s,
                leases=self.live_leases,
            )
        return self._live.open(exec_id)

    async def _publish_live(self, subject: str, data: bytes) -> None:
        """Live output: core NATS, best effort — dropped while disconnected."""
        nc = self.nc
        if nc is not None and nc.is_connected:
            await nc.publish(subject, data)

    async def _upload(self, name: str, path: Path) -> None:
        assert self.nc is not None
        store = await self.nc.jetstream().object_store(subjects.OBJ_OUTPUTS)
        with open(path, "rb") as fh:
            await store.put(name, fh)

    async def _connect_and_serve(self) -> None:
        if self.s.startup_delay_max > 0:
            await asyncio.sleep(random.uniform(0, self.s.startup_delay_max))
        if self._connector is not None:
            # A swarm's shared connection: its owner keeps it up.
            self.nc = await self._connector(self._on_state)
            await self._serve_connection()
            return
        while True:
            closed = asyncio.Event()

            def on_state(state: str, closed: asyncio.Event = closed) -> None:
                self._on_state(state)
                if state == "closed":
                    closed.set()

            self.nc = await connect(
                self.s.nats_urls,
                name=f"kanade-agent:{self.pc_id}",
                on_state=on_state,
                credentials=await self._credentials(),
            )
            self._bus = None
            await until_closed(self._serve_connection(), closed)
            await closed.wait()
            # The broker gave this connection up for good (bus.connection.until_closed): a
            # machine agent must never stay offline until someone restarts it, so it
            # connects again — re-reading its credentials, which a re-enrolment may have
            # replaced — with the usual backoff while it is refused.
            log.warning(
                "the broker closed this agent's connection (%s); connecting again",
                self.nc.last_error or "no reason given",
            )
            await self.intake.close()
            await asyncio.sleep(random.uniform(1.0, 3.0))

    async def _serve_connection(self) -> None:
        """Everything that runs on one broker connection, until cancelled."""
        assert self.nc is not None
        self._on_state("connected")
        await subscribe_control(self.nc, subjects.ping_subject(self.pc_id), self.heartbeats.on_ping)
        if self._owns_nc:
            # A swarm subscribes once for all its identities and calls kill_exec().
            await subscribe_control(self.nc, subjects.KILL_SUBJECT, self._on_kill)
            await subscribe_control(self.nc, subjects.LIVE_WATCH_SUBJECT, self._on_live_watch)
        await self._resync()
        await self.heartbeats.send()
        await self.intake.ensure_consumer()
        if self._owns_nc:
            confirm(self.s.data_dir, __version__)  # a switched-to version: it started for real
        await self.intake.serve()

    async def _credentials(self) -> BusCredentials:
        """This agent's broker identity, waiting (and saying why) until its files exist:
        an agent installed before it was enrolled stays up and connects once enrolled."""
        credentials = BusCredentials.for_agent(self.s.trust_path, self.pc_id)

        def missing(attempt: int, exc: BaseException, _delay: float) -> None:
            if attempt == 1 or attempt % 12 == 0:  # once, then about every minute
                log.error(
                    "%s; this agent has no broker credential: run `kanade-agent enroll "
                    "URL TOKEN` (still waiting for it)",
                    exc,
                )

        async def present() -> None:
            credentials.check()

        await retry(present, base=0.5, cap=5.0, retry_on=(CredentialsError,), on_retry=missing)
        return credentials

    async def _resync(self) -> None:
        """Re-read every mirrored bucket after a (re)connect (SPEC §3.6 re-sync rules)."""
        if self.nc is not None and self.fleet_view.owns_fleet:
            await self.fleet.resync(self.nc)

    async def _membership_current(self) -> bool:
        """Whether this agent's group membership is known up to now (re-read first when a
        disconnect left it stale). A swarm's shared state is its owner's to re-read."""
        if not self.fleet_view.owns_fleet:
            return True
        nc = self.nc
        return nc is not None and nc.is_connected and await self.fleet.current_membership(nc)

    async def _on_kill(self, msg: Msg) -> None:
        exec_id = kill_request_exec_id(msg.data)
        if exec_id is not None:
            self.kill_exec(exec_id)

    async def _on_live_watch(self, msg: Msg) -> None:
        try:
            watch = decode(LiveWatch, msg.data)
        except WireDecodeError as exc:
            log.warning("ignored a malformed live-output watch: %s", exc)
            return
        self.live_leases.watch(watch.exec_ids, watch.for_s)
        if self._live is not None:
            self._live.watched(set(watch.exec_ids))

    # --- fleet state from KV ------------------------------------------------------------------
    def _apply_config(self, old: dict[str, Any], values: dict[str, Any]) -> None:
        """Apply a new effective config (SPEC §3.7) to the parts it tunes, live."""
        if values.get("heartbeat_interval") != old.get("heartbeat_interval"):
            self.heartbeats.set_interval(float(values["heartbeat_interval"]))
        if values.get("max_local_concurrent") != old.get("max_local_concurrent"):
            self.executor.limiter.set_limit(int(values["max_local_concurrent"]))
        live = ("live_output_bytes_per_s", "live_output_msgs_per_s")
        if any(values.get(k) != old.get(k) for k in live):
            self._live_cap = (
                int(values["live_output_bytes_per_s"]),
                float(values["live_output_msgs_per_s"]),
            )
            if self._live is not None:
                self._live.retune(*self._live_cap)
        if values.get("log_level") != old.get("log_level"):
            logging.getLogger().setLevel(str(values["log_level"]).upper())
        if self._owns_nc:  # a swarm's identities share a process: none updates it
            self.release.on_target(
                values.get("target_version"),
                values.get("target_version_jitter"),
                self._start_update,
            )
        if values != old:
            log.info("effective config: %s", values)

    # --- self-update (SPEC §3.8) -----------------------------------------------------------------
    def _start_update(self, target: str, jitter: float) -> None:
        from kanade.agent.update.updater import SelfUpdater

        if self._update_task is not None and not self._update_task.done():
            if getattr(self._update_task, "kanade_target", None) == target:
                return
            self._update_task.cancel()
        updater = SelfUpdater(
            data_dir=self.s.data_dir,
            status=self.release,
            trust=self.trust,
            connection=lambda: self.nc,
            argv=sys.argv[1:],
            switch=self._switch,
            report=self.heartbeats.wake,
        )
        self._update_task = self._spawn(updater.run(target, jitter))
        self._update_task.kanade_target = target  # type: ignore[attr-defined]

    async def _switch(self, artefact: Path) -> None:
        """Stop taking commands, let what runs finish, then stop: the process becomes
        ``artefact`` (kanade.agent.cli). Admitted commands and queued results are on disk."""
        await self.intake.close()
        while self.executor.running or self.executor.queue_length:
            await asyncio.sleep(0.5)
        self.restart_into = artefact
        self.stop()

    def _groups_changed(self) -> None:
        self._spawn(self._on_groups_changed())

    async def _on_groups_changed(self) -> None:
        """Subscriptions and config follow the new membership, without a restart."""
        if self.nc is None or not self._ready():
            return  # applied by the re-sync on the next connect
        await self.intake.ensure_consumer()
        await self.fleet.follow_groups(self.nc, self.pc_id, self.groups)
        await self.heartbeats.send()


class LedgerPruner(Worker):
    """Forgets ledger entries past their retention, hourly."""

    name = "ledger prune"

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(interval=3600)
        self.ledger = ledger

    async def step(self) -> None:
        pruned = self.ledger.prune(time.time())
        if pruned:
            log.info("pruned %d old ledger entries", pruned)
