"""The FastAPI application factory and its lifespan.

Start-up: migrate the DB, note whether it is brand new (a wiped or first DB
re-projects every stream from the start and gets its operator state back from KV),
then serve HTTP at once while the broker link comes up in the background (connect
with retry → topology → operator state → projector consumers → heartbeat
subscription → workers). While a database is being rebuilt, the workers that decide
from its rows (reaper, rollout runner, approval sweeper, retention, notifications,
scheduler) wait until the replay has caught up (docs/backend.md, "A wiped database comes
back whole"). Across replicas (SPEC §9) those run on one replica only: the scheduler under
its KV lease, the others under the deciders lease in the database.
Shutdown cancels the workers, closes the bus, then the DB.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import structlog
from fastapi import FastAPI
from nats.js.object_store import ObjectStore
from sqlalchemy.engine import Connection

from kanade import __version__
from kanade.backend.api import agent_releases as agent_releases_routes
from kanade.backend.api import approvals as approvals_routes
from kanade.backend.api import audit as audit_routes
from kanade.backend.api import auth as auth_routes
from kanade.backend.api import control as control_routes
from kanade.backend.api import enrolment as enrolment_routes
from kanade.backend.api import errors as api_errors
from kanade.backend.api import execs as execs_routes
from kanade.backend.api import fleet as fleet_routes
from kanade.backend.api import freeze as freeze_routes
from kanade.backend.api import health as health_routes
from kanade.backend.api import inventory as inventory_routes
from kanade.backend.api import jobs as jobs_routes
from kanade.backend.api import keys as keys_routes
from kanade.backend.api import live_output as live_output_routes
from kanade.backend.api import notify as notify_routes
from kanade.backend.api import openapi as api_openapi
from kanade.backend.api import retention as retention_routes
from kanade.backend.api import rollouts as rollouts_routes
from kanade.backend.api import schedules as schedules_routes
from kanade.backend.api import scripts as scripts_routes
from kanade.backend.api import ui as ui_routes
from kanade.backend.api.middleware.audit import AuditMiddleware
from kanade.backend.api.middleware.auth import AuthMiddleware
from kanade.backend.api.middleware.body_limit import BodyLimitMiddleware
from kanade.backend.api.middleware.headers import SecurityHeadersMiddleware
from kanade.backend.api.middleware.live import LiveMiddleware
from kanade.backend.api.middleware.nul import NulQueryMiddleware
from kanade.backend.api.middleware.options import OptionsMiddleware
from kanade.backend.messaging.consumers import PROJECTION_CONSUMERS, replayed
from kanade.backend.messaging.link import BrokerLink
from kanade.backend.observability.metrics import Metrics
from kanade.backend.services.approvals import ApprovalService
from kanade.backend.services.auth.setup import check_auth_settings, make_authenticator
from kanade.backend.services.container import Services
from kanade.backend.services.execs import ExecService
from kanade.backend.services.keys import SigningKeyService
from kanade.backend.services.rollouts import RolloutService
from kanade.backend.settings import Settings
from kanade.backend.store import projection_state
from kanade.backend.store.database import Database, safe_url
from kanade.backend.store.migrate import upgrade
from kanade.backend.store.state_outbox import STATE_CHANGED
from kanade.backend.workers.approvals import ApprovalSweeper
from kanade.backend.workers.dashboard_relay import DashboardRelay
from kanade.backend.workers.deciders import Deciders, replica_name
from kanade.backend.workers.heartbeats import HeartbeatSink
from kanade.backend.workers.live_watch import LiveWatchRenewer
from kanade.backend.workers.notify.delivery import NotifyDelivery
from kanade.backend.workers.notify.detector import NotifyDetector
from kanade.backend.workers.projection.audit import AuditProjector
from kanade.backend.workers.projection.decisions import DecisionsProjector
from kanade.backend.workers.projection.execs import ExecsProjector
from kanade.backend.workers.projection.results import ResultsProjector
from kanade.backend.workers.projection.worker import ProjectionWorker
from kanade.backend.workers.provisioning import ConsumerProvisioner
from kanade.backend.workers.reaper import Reaper
from kanade.backend.workers.retention import RetentionWorker
from kanade.backend.workers.rollouts import RolloutRunner
from kanade.backend.workers.scheduler import Scheduler
from kanade.backend.workers.state_publisher import StatePublisher
from kanade.backend.workers.state_sync import StateSync
from kanade.bus.connection import Bus
from kanade.bus.credentials import BusCredentials
from kanade.bus.tasks import cancel_and_wait
from kanade.core import subjects
from kanade.core.dispatch import Budgets
from kanade.core.instants import system_clock
from kanade.core.notify.retry import RetryPolicy
from kanade.security.authority import Authority
from kanade.security.signing_keys import ensure_key_dir, resolve_key_dir
from kanade.worker import Worker

log = structlog.get_logger(__name__)

DB_ID_KEY = "db_id"
REBUILD_KEY = "rebuild_pending"
"""``projection_state`` key, present from a new database's first start until its replay
caught up: a backend that stops mid-rebuild resumes it (gated workers) on its next start."""
REPLAY_POLL_S = 0.2


class ForeignDatabaseError(RuntimeError):
    """The database was claimed by another deployment (SPEC §9: replicas share one
    database; a backend of another deployment must not write into it)."""


async def _claim_database(db: Database, deployment: str) -> None:
    """Refuse a database another deployment owns; claim an unowned (new, wiped) one."""
    now = system_clock()
    owner = await db.write(lambda conn: projection_state.claim_deployment(conn, deployment, now))
    if owner is not None:
        message = (
            f"refusing to start: the database belongs to another deployment (authority "
            f"account {owner}, this backend's is {deployment}); point --db at this "
            f"deployment's database, or --authority at that deployment's trust directory"
        )
        log.error(message)
        raise ForeignDatabaseError(message)


async def _is_new_database(db: Database) -> bool:
    """True when this database has never been projected into (first run, or wiped).

    The id is written once; a DB that lacks it has lost everything the consumers
    already delivered, so they must replay their streams from the start (SPEC §4.2).
    """
    now = system_clock()

    def note(conn: Connection) -> bool:
        new = projection_state.set_state_if_absent(conn, DB_ID_KEY, uuid.uuid4().hex, now)
        if new:
            projection_state.set_state_if_absent(conn, REBUILD_KEY, "1", now)
        return new

    return await db.write(note)


async def _rebuild_pending(db: Database) -> bool:
    return await db.read(lambda conn: projection_state.get_state(conn, REBUILD_KEY) is not None)


async def _after(gate: asyncio.Event, run: Callable[[], Awaitable[None]]) -> None:
    """Run a worker once ``gate`` is open (a database being rebuilt has caught up)."""
    await gate.wait()
    await run()


def bus_credentials(settings: Settings) -> BusCredentials:
    """The backend's broker identity from the deployment's trust directory; raises
    :class:`~kanade.security.authority.AuthorityError` or
    :class:`~kanade.bus.credentials.CredentialsError` naming the missing file."""
    authority = Authority.load(settings.authority_dir)
    credentials = BusCredentials(authority.backend_creds, authority.ca_file)
    credentials.check()
    return credentials


def create_app(settings: Settings) -> FastAPI:
    check_auth_settings(settings)  # refuse an unsafe auth configuration before serving
    credentials = bus_credentials(settings)  # no anonymous connection, ever (SPEC §8.1)
    deployment = Authority.load(settings.authority_dir).account_public_key()
    # Every command and every document agents obey is signed (SPEC §8.2): no key, no start.
    key_dir = resolve_key_dir(settings.signing_keys_dir, settings.db_url)
    key_set, created = ensure_key_dir(key_dir)
    signer = key_set.signer()
    if created:
        log.warning("created a command-signing key", key_dir=str(key_dir), kid=signer.active.kid)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await upgrade(settings.db_url)
        db = Database(settings.db_url)
        try:
            await _claim_database(db, deployment)
        except ForeignDatabaseError:
            db.close()
            raise
        new_db = await _is_new_database(db)
        rebuilding = await _rebuild_pending(db)
        link = BrokerLink(
            settings.nats_urls,
            credentials=credentials,
            signer=signer,
            stream_replicas=settings.stream_replicas,
        )
        metrics = Metrics()
        # Operator state (users, approvals, rollouts, schedule counters) mirrored in KV, so
        # a wiped database comes back whole (SPEC §1.3).
        state = StateSync(db, link.bus)
        publisher = StatePublisher(state)
        db.listen(STATE_CHANGED, publisher.wake)
        # Open at once, unless the database is being rebuilt from the broker.
        settled = asyncio.Event()
        if not rebuilding:
            settled.set()
        # Rollouts and approvals live in the database; the rollout runner and the approval
        # sweeper drive them (SPEC §4.7-8), the reaper closes what will never report
        # (§4.3). Once across replicas (SPEC §9): only the holder of the deciders lease
        # runs them, writing through a database fenced by it.
        # Retention (SPEC §4.12) and notifications (detector and sender) are in the same
        # team: each must run once, and each writes rows it decided from rows. They start
        # once the database is settled (a rebuild neither re-announces history nor prunes
        # what the replay has not brought back yet).
        runners: list[RolloutRunner] = []
        senders: list[NotifyDelivery] = []

        def wake_rollouts() -> None:
            for runner in runners:
                runner.wake()

        def wake_senders() -> None:
            for sender in senders:
                sender.wake()

        async def outputs_store() -> ObjectStore:
            return await link.bus().obj(subjects.OBJ_OUTPUTS)

        def deciding_team(fenced: Database) -> list[Worker]:
            runner = RolloutRunner(
                fenced,
                link.bus,
                clock=system_clock,
                interval_s=settings.rollout_interval_s,
                flush=state.flush,
            )
            runners[:] = [runner]
            detector, sender = _notify_team(settings, fenced, metrics, lambda: deciders.leading)
            senders[:] = [sender]
            return [
                Reaper(
                    fenced,
                    interval_s=settings.reaper_interval_s,
                    grace=timedelta(seconds=settings.no_result_grace_s),
                    on_reap=metrics.on_reap,
                ),
                runner,
                ApprovalSweeper(
                    fenced, link.bus, clock=system_clock, sweep_s=settings.approval_sweep_s
                ),
                RetentionWorker(
                    fenced,
                    policy=settings.retention,
                    clock=system_clock,
                    outputs=outputs_store,
                    observer=metrics,
                ),
                detector,
                sender,
            ]

        deciders = Deciders(
            db,
            deciding_team,
            ttl_s=settings.deciders_lease_ttl_s,
            holder=replica_name(settings.http_port),
        )
        app.state.deciders = deciders
        services = Services(
            settings=settings,
            db=db,
            link=link,
            execs=ExecService(
                db,
                link.bus,
                budgets=Budgets(settings.max_timeout_s, settings.max_output_bytes),
                clock=system_clock,
                approval_ttl=timedelta(seconds=settings.approval_ttl_s),
            ),
            rollouts=RolloutService(db, link.bus, clock=system_clock, on_change=wake_rollouts),
            approvals=ApprovalService(
                db,
                link.bus,
                auth_enabled=settings.auth_mode != "disabled",
                clock=system_clock,
                on_rollout_started=wake_rollouts,
            ),
            metrics=metrics,
            auth=make_authenticator(settings, db),
            keys=SigningKeyService(key_dir, signer, link.bus, clock=system_clock),
        )
        app.state.services = services
        services.notify.on_change = wake_senders
        heartbeats = HeartbeatSink(
            db,
            flush_interval_s=settings.heartbeat_flush_s,
            on_identity_mismatch=metrics.on_identity_mismatch,
            on_dropped=metrics.on_dropped,
        )
        provisioner = ConsumerProvisioner()
        reset_pending = [new_db]

        async def caught_up(bus: Bus) -> None:
            """Open the gate once the replay has caught up with the streams."""
            while True:
                try:
                    await replayed(bus.js, PROJECTION_CONSUMERS, poll_s=REPLAY_POLL_S)
                    await db.write(lambda conn: projection_state.clear_state(conn, REBUILD_KEY))
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("waiting for the replay; retrying", error=str(exc))
                    await asyncio.sleep(1.0)
            log.info("database rebuilt from the streams; workers start")
            settled.set()

        async def on_ready(bus: Bus) -> list[asyncio.Task[None]]:
            if not state.started.is_set():
                await state.start(bus, rebuild=rebuilding)
            projectors: list[ProjectionWorker] = [
                ResultsProjector(
                    bus,
                    db,
                    batch_max=settings.projector_batch,
                    on_projected=metrics.on_projected,
                    on_identity_mismatch=metrics.on_identity_mismatch,
                    on_dropped=metrics.on_dropped,
                ),
                ExecsProjector(
                    bus,
                    db,
                    batch_max=settings.projector_batch,
                    on_projected=metrics.on_projected,
                    on_dropped=metrics.on_dropped,
                ),
                AuditProjector(
                    bus,
                    db,
                    batch_max=settings.projector_batch,
                    on_projected=metrics.on_projected,
                    on_dropped=metrics.on_dropped,
                ),
                DecisionsProjector(
                    bus,
                    db,
                    batch_max=settings.projector_batch,
                    on_projected=metrics.on_projected,
                    on_identity_mismatch=metrics.on_identity_mismatch,
                ),
            ]
            for projector in projectors:
                await projector.prepare(reset=reset_pending[0])
            reset_pending[0] = False  # only the first successful set-up replays
            await heartbeats.subscribe(bus)
            await provisioner.subscribe(bus)
            # Dashboard events to and from the other replicas (SPEC §9).
            relay = DashboardRelay(bus)
            await relay.subscribe()
            live_watches = LiveWatchRenewer(services.live)
            workers: list[Worker] = [*projectors, heartbeats, publisher, relay, live_watches]
            tasks = [asyncio.create_task(w.run(), name=w.label) for w in workers]
            if not settled.is_set():
                tasks.append(asyncio.create_task(caught_up(bus), name="replay"))
            return tasks

        link.start(on_ready)
        # The deciders' lease lives in the database: the reaper keeps closing overdue rows
        # while the broker is away (that is exactly when results stop arriving).
        deciders_task = asyncio.create_task(_after(settled, deciders.run), name="deciders")
        # The central scheduler competes for its KV lease; only the holder fires.
        scheduler = Scheduler(
            db,
            link.bus,
            services.execs.budgets,
            registry=metrics.registry,
            reconcile_poll=timedelta(seconds=settings.reconcile_poll_s),
            lease_ttl_s=settings.scheduler_lease_ttl_s,
            late_tolerance=timedelta(seconds=settings.scheduler_late_tolerance_s),
        )
        app.state.scheduler = scheduler if settings.scheduler else None
        scheduler_tasks = (
            [asyncio.create_task(_after(settled, scheduler.run), name="scheduler")]
            if settings.scheduler
            else []
        )
        log.info(
            "backend started",
            db=safe_url(settings.db_url),
            nats=settings.nats_url,
            new_db=new_db,
            rebuilding=rebuilding,
        )
        try:
            yield
        finally:
            await cancel_and_wait([deciders_task, *scheduler_tasks])
            await deciders.resign()  # a standby replica takes over at its next attempt
            if scheduler_tasks:
                await scheduler.stop()  # releases the lease: a standby takes over at once
            await heartbeats.unsubscribe()
            await provisioner.close()
            await link.close()
            with contextlib.suppress(Exception):
                await heartbeats.flush()  # the last coalesced heartbeats
            db.close()
            log.info("backend stopped")

    app = FastAPI(
        title="kanade",
        version=__version__,
        lifespan=lifespan,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    api_errors.install(app)
    api_openapi.install(app)
    # The last added runs first: every request passes the role table (auth) before
    # anything else, whichever router serves it; then, once the response is sent, the
    # audit guarantee publishes its record before live invalidation tells the dashboard.
    app.add_middleware(AuditMiddleware)
    app.add_middleware(LiveMiddleware)
    app.add_middleware(AuthMiddleware)
    # Outside authentication: OPTIONS and the security headers concern every response,
    # and an oversized body is refused before anyone reads it (issue #15).
    app.add_middleware(OptionsMiddleware)
    # A NUL in a query value is a 400 before any route hands it to the store (PostgreSQL
    # refuses NUL in text: it was a 500 there).
    app.add_middleware(NulQueryMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_script_bytes=settings.max_script_bytes,
        max_release_bytes=settings.max_release_bytes,
    )
    app.include_router(health_routes.router)
    app.include_router(jobs_routes.router)
    app.include_router(execs_routes.router)
    app.include_router(live_output_routes.router)
    app.include_router(schedules_routes.router)  # before fleet: /api/agents/drift
    app.include_router(enrolment_routes.router)  # before fleet: /api/agents/enrolled
    app.include_router(fleet_routes.router)
    app.include_router(ui_routes.router)
    app.include_router(control_routes.router)
    app.include_router(auth_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(freeze_routes.router)
    app.include_router(inventory_routes.router)
    app.include_router(rollouts_routes.router)
    app.include_router(approvals_routes.router)
    app.include_router(keys_routes.router)
    app.include_router(scripts_routes.router)
    app.include_router(agent_releases_routes.router)
    app.include_router(notify_routes.router)
    app.include_router(retention_routes.router)
    return app


def _notify_team(
    settings: Settings, db: Database, metrics: Metrics, leading: Callable[[], bool]
) -> tuple[NotifyDetector, NotifyDelivery]:
    """The notification detector and sender of one deciders term (docs/notifications.md).
    ``leading`` is the lease's freshness: a term whose renewals stall stops sending before
    a standby can take over."""
    delivery = NotifyDelivery(
        db,
        leading=leading,
        policy=RetryPolicy(
            base_s=settings.notify_retry_base_s,
            cap_s=settings.notify_retry_max_s,
            max_attempts=settings.notify_max_attempts,
        ),
        timeout_s=settings.notify_timeout_s,
        concurrency=settings.notify_concurrency,
        interval_s=min(1.0, settings.notify_retry_base_s),
        on_attempt=metrics.on_notify_attempt,
    )
    detector = NotifyDetector(
        db,
        leading=leading,
        interval_s=settings.notify_scan_s,
        lookback=timedelta(seconds=settings.notify_lookback_s),
        keep=timedelta(seconds=settings.notify_keep_s),
        fanned_out=delivery.wake,
    )
    return detector, delivery
