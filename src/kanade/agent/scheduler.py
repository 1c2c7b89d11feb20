"""The agent's local scheduler: ``runs_on: agent`` schedules fire here (SPEC §3.6).

What it does, rule by rule:

* **Registration.** From the mirrored schedule and job catalogs
  (:class:`~kanade.agent.fleetstate.FleetState`: ``kanade_schedules`` key = schedule id,
  value = the schedule's JSON; ``kanade_jobs`` key = job id, value = the manifest JSON),
  every enabled ``runs_on: agent`` schedule whose target includes this agent (all, its
  pc_id, or one of its current groups) is registered — exactly
  :func:`~kanade.core.scheduling.agent_schedule_set`, so the version the agent reports
  is the one the backend expects (:func:`~kanade.core.scheduling.expected_version`).
  Documents are read tolerantly (``parse_schedule(strict=False)``); an unreadable one is
  ignored with a warning. Registration is keyed by schedule id (never twice); a schedule
  whose canonical digest changed is re-registered (new definition from now on), a vanished
  one is unregistered.
* **Re-sync.** The mirrors re-read each bucket into a fresh copy after every (re)connect
  and swap it in only when complete (:class:`~kanade.agent.kvmirror.KvMirror`); a failed
  read keeps the old state, so a transient error never empties the scheduler. Every
  catalog, membership or freeze change marks the scheduler dirty and wakes it; it then
  re-evaluates every schedule at once. Membership changes only arrive from KV, so while
  the broker is down they wait for the re-sync that follows the reconnect.
* **Offline.** Ticks are local timers: the loop sleeps until the earliest next fire (at
  most a minute, the reconcile poll), woken early by catalog/membership changes. What was
  applied is cached on disk (``catalog.json``), so an agent restarted while the broker is
  unreachable keeps firing. Script-object digests are resolved from the object store
  whenever the catalogs change while connected and cached; a job whose digest is unknown
  is skipped with a warning naming the object.
* **Gates.** :func:`~kanade.core.scheduling.decide_tick` (active, window, skip_dates,
  freeze, starting_deadline, catchup) — the backend's implementation, not a copy.
  ``last_tick`` is persisted, so occurrences missed while the agent was down follow
  ``catchup``. A fire whose starting deadline passed is submitted anyway so the agent's
  own deadline gate reports it as skipped (125) through the normal result path.
* **Dedup.** Calendar/cron fire every occurrence; ``per_pc`` polls each minute (and once
  right at registration) and fires when :func:`~kanade.core.scheduling.pc_decision` says
  so (never succeeded, or last success at least ``every`` ago). Successes are persisted.
* **Claims.** Before a fire the schedule is claimed until
  :func:`~kanade.core.scheduling.claim_until`; a tick that finds a live claim is skipped, an
  expired one is taken over with a warning. The run's result releases the claim (only if
  it still holds it) and records a success only when the script ran and exited 0.
* **Execution.** A fire becomes a :class:`~kanade.core.models.wire.Command` built by
  :func:`~kanade.core.dispatch.build_command` with deterministic ids
  (``request_id_for(occurrence_id(schedule, nominal), pc_id)``, ``exec_id_for(...)``,
  ``issued_at`` = the nominal time), handed to the agent's ``submit_local`` — the same
  ledger admission, gates, execution and outbox as a received command. Re-firing the same
  occurrence (e.g. after a crash) is a ledger DUPLICATE and never runs twice.
* **Loaded on demand.** Most agents have no ``runs_on: agent`` schedule, and the scheduling
  core (schedule models, cronsim, time-zone rules, validation) costs several MB of resident
  memory in every agent of the fleet (SPEC §10.2). So the scheduler starts *inactive*: it
  reports the empty set's version (:data:`~kanade.core.digests.EMPTY_SET_VERSION`) and, on
  every catalog or membership change, only looks at the raw schedule documents
  (:func:`might_apply`, a cheap superset of
  :func:`~kanade.core.scheduling.applies_to_agent`). It activates — imports the core and
  reads its files — the first time one might apply to this agent, or at start when an
  earlier run left applied schedules, last ticks, claims or successes on disk
  (:meth:`~kanade.agent.schedstore.SchedulerStore.has_state`). Once active it stays active.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from kanade.agent.fleetstate import FleetState
from kanade.agent.kvmirror import KvMirror
from kanade.agent.ledger import Admission
from kanade.agent.schedstore import CachedCatalog, SchedulerStore, iso
from kanade.core import subjects
from kanade.core.digests import EMPTY_SET_VERSION, sha256_hex_from_nats_digest

# The scheduling core is imported where it is used, once the scheduler is active (see
# "Loaded on demand" above); these names are for the annotations only.
if TYPE_CHECKING:
    from nats.aio.client import Client

    from kanade.core.models.job import JobManifest
    from kanade.core.models.schedule import Schedule
    from kanade.core.models.wire import Command, Result
    from kanade.core.scheduling import ClaimTable, Fire, Freeze, Plan, Skip

log = logging.getLogger("kanade.agent.scheduler")

MAX_SLEEP_S: Final = 60.0
"""The loop wakes at least once a minute (reconcile polls, clock steps)."""
DIGEST_TIMEOUT_S: Final = 3.0
_TINY: Final = timedelta(microseconds=1)

Submit = Callable[["Command"], Admission]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@functools.cache
def local_zone() -> tzinfo:
    """This machine's zone as an IANA zone when it can be found (DST-aware), for
    ``tz: local`` schedules; the fixed current offset otherwise."""
    from zoneinfo import ZoneInfo

    candidates: list[str] = []
    tz_env = os.environ.get("TZ", "").lstrip(":")
    if tz_env:
        candidates.append(tz_env)
    with contextlib.suppress(OSError):
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text().strip())
    for name in candidates:
        with contextlib.suppress(Exception):
            return ZoneInfo(name)
    return datetime.now().astimezone().tzinfo or UTC


# --- tolerant, cached parsing ------------------------------------------------------------------
# A swarm runs thousands of schedulers over one shared mirror: each document is parsed once
# per process (and a bad one warned about once), keyed by its exact bytes.
_PARSE_CACHE_MAX: Final = 4096
_parse_cache: OrderedDict[tuple[str, bytes], Schedule | JobManifest | None] = OrderedDict()


def _parse(kind: str, key: str, raw: bytes) -> Any:
    cache_key = (kind, raw)
    if cache_key in _parse_cache:
        _parse_cache.move_to_end(cache_key)
        return _parse_cache[cache_key]
    from kanade.core.validation import parse_job, parse_schedule

    model: Schedule | JobManifest | None
    try:
        data = json.loads(raw)
        model = (
            parse_schedule(data, strict=False)
            if kind == "schedule"
            else parse_job(data, strict=False)
        )
    except (ValueError, UnicodeDecodeError) as exc:  # DocumentInvalid is a ValueError
        log.warning("ignored unreadable %s %r in KV: %s", kind, key, exc)
        model = None
    _parse_cache[cache_key] = model
    if len(_parse_cache) > _PARSE_CACHE_MAX:
        _parse_cache.popitem(last=False)
    return model


_digest_cache: OrderedDict[int, tuple[Schedule, str]] = OrderedDict()


def digest_of(schedule: Schedule) -> str:
    """:func:`~kanade.core.scheduling.schedule_digest`, once per parsed object (the parse
    cache hands every scheduler of a swarm the same object for the same bytes)."""
    from kanade.core.scheduling import schedule_digest

    hit = _digest_cache.get(id(schedule))
    if hit is not None and hit[0] is schedule:
        return hit[1]
    digest = schedule_digest(schedule)
    _digest_cache[id(schedule)] = (schedule, digest)  # holds the object: its id stays unique
    if len(_digest_cache) > _PARSE_CACHE_MAX:
        _digest_cache.popitem(last=False)
    return digest


def parse_schedules(values: dict[str, bytes]) -> dict[str, Schedule]:
    from kanade.core.models.schedule import Schedule

    out: dict[str, Schedule] = {}
    for key, raw in sorted(values.items()):
        schedule = _parse("schedule", key, raw)
        if isinstance(schedule, Schedule):
            out[schedule.id] = schedule
    return out


def parse_jobs(values: dict[str, bytes]) -> dict[str, JobManifest]:
    from kanade.core.models.job import JobManifest

    out: dict[str, JobManifest] = {}
    for key, raw in sorted(values.items()):
        job = _parse("job", key, raw)
        if isinstance(job, JobManifest):
            out[job.id] = job
    return out


def parse_freeze(raw: bytes | None) -> Freeze | None:
    """The fleet freeze from its KV value; an unreadable record freezes (the safe side,
    like the backend)."""
    from kanade.core.scheduling import Freeze, freeze_from_json

    if raw is None or not raw.strip():
        return None
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return freeze_from_json(data)
    except (ValueError, UnicodeDecodeError) as exc:
        log.error("unreadable fleet freeze record (%s); treating the fleet as frozen", exc)
        return Freeze()


def _json_doc(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _raw_doc(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


# --- the cheap test that decides when to load the scheduling core ------------------------------
@dataclass(frozen=True)
class _TargetHint:
    """What a raw ``runs_on: agent`` document says about its target; None = anything."""

    everyone: bool
    pcs: frozenset[Any] | None
    groups: frozenset[Any] | None


@functools.lru_cache(maxsize=_PARSE_CACHE_MAX)
def _target_hint(raw: bytes) -> _TargetHint | None:
    """None when the document certainly does not apply to any agent: not a JSON object,
    not ``runs_on: agent``, or disabled (``enabled`` is a strict bool: only ``true`` or
    leaving it out enables). Anything the schedule model might read differently from a
    plain look at the JSON is kept as "may target everyone"."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("runs_on") != "agent":
        return None
    if doc.get("enabled", True) is not True:
        return None
    target = doc.get("target")
    if not isinstance(target, dict):
        return _TargetHint(True, None, None)

    def members(key: str) -> frozenset[Any] | None:
        value = target.get(key, [])
        if not isinstance(value, list):
            return None
        return frozenset(v for v in value if isinstance(v, str))

    # ``all`` is a lax bool for the model ("yes", 1, ...): anything but false may mean all.
    return _TargetHint(target.get("all", False) is not False, members("pcs"), members("groups"))


def might_apply(raw: bytes, pc_id: str, groups: Iterable[str]) -> bool:
    """Whether the raw schedule document ``raw`` may be one the agent ``pc_id`` (member of
    ``groups``) applies. Never False for a document that
    :func:`~kanade.core.scheduling.applies_to_agent` accepts once parsed; True for some
    that it rejects (the parse decides then)."""
    hint = _target_hint(raw)
    if hint is None:
        return False
    if hint.everyone or hint.pcs is None or hint.groups is None or pc_id in hint.pcs:
        return True
    return not hint.groups.isdisjoint(groups)


# --- the scheduler -----------------------------------------------------------------------------
@dataclass
class Registered:
    schedule: Schedule
    plan: Plan
    digest: str
    last_tick: datetime
    next_due: datetime | None


class LocalScheduler:
    """One agent identity's local scheduler. Created by the agent (which wires
    :meth:`on_finished` into its result path and :attr:`version` into its heartbeats) and
    run as one task with :meth:`run`. Inactive (the scheduling core not loaded) until
    :meth:`activate`: see "Loaded on demand" in the module documentation."""

    local_tz: tzinfo
    claims: ClaimTable

    def __init__(
        self,
        *,
        pc_id: str,
        data_dir: Path,
        fleet: FleetState,
        submit: Submit,
        groups: Callable[[], Sequence[str]],
        connection: Callable[[], Client | None] = lambda: None,
        in_flight: Callable[[str], bool] = lambda _request_id: False,
        on_applied: Callable[[str], None] | None = None,
        durable: bool = True,
        clock: Callable[[], datetime] = _utcnow,
        local_tz: tzinfo | None = None,
    ) -> None:
        self.pc_id = pc_id
        self.fleet = fleet
        self._submit = submit
        self._groups = groups
        self._connection = connection
        self._in_flight = in_flight
        self._on_applied = on_applied
        self._clock = clock
        self._local_tz = local_tz
        self.store = SchedulerStore(data_dir, durable=durable)

        self.registered: dict[str, Registered] = {}
        self.jobs: dict[str, JobManifest] = {}
        self.freeze: Freeze | None = None
        self.digests: dict[str, str] = {}
        self.version = EMPTY_SET_VERSION
        self.successes: dict[str, datetime] = {}
        self._saved_ticks: dict[str, datetime] = {}  # of schedules not (yet) registered
        self._cache: CachedCatalog | None = None
        self.active = False
        self._dirty = True
        self._wake = asyncio.Event()
        self._stopped = False
        self._warned: set[tuple[str, str]] = set()
        # Counters, for logs and tests.
        self.fired = 0
        self.skipped_ticks = 0
        fleet.listen(self._on_fleet_change)
        if self.store.has_state():
            self.activate()

    def activate(self) -> None:
        """Load the scheduling core and this scheduler's files (once; later calls do nothing)."""
        if self.active:
            return
        from kanade.core.scheduling import ClaimTable

        self.local_tz = self._local_tz or local_zone()
        self.successes = self.store.load_successes()
        ticks, claims = self.store.load_state()
        self._saved_ticks = ticks
        self.claims = ClaimTable(claims)
        self._cache = self.store.load_catalog()
        if self._cache is not None:
            self.digests = dict(self._cache.digests)
        self.active = True
        log.info("local scheduler active (zone for tz: local = %s)", self.local_tz)

    def _may_apply_any(self) -> bool:
        """Whether a schedule in the mirrored catalog may be one this agent applies."""
        groups = list(self._groups())
        return any(
            might_apply(raw, self.pc_id, groups) for raw in self.fleet.schedules.values.values()
        )

    # --- wiring -------------------------------------------------------------------------------
    def _on_fleet_change(self, mirror: KvMirror) -> None:
        fleet = self.fleet
        if mirror in (
            fleet.schedules,
            fleet.jobs,
            fleet.freeze,
            fleet.membership,
            fleet.revocations,
        ):
            self.mark_dirty()

    def mark_dirty(self) -> None:
        """Re-evaluate every schedule at the next wake-up (now)."""
        self._dirty = True
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    @property
    def applied(self) -> list[Schedule]:
        return [r.schedule for r in sorted(self.registered.values(), key=lambda r: r.schedule.id)]

    # --- the loop -----------------------------------------------------------------------------
    async def run(self) -> None:
        if self.active:
            log.info("local scheduler started (zone for tz: local = %s)", self.local_tz)
        else:
            log.info("local scheduler started (inactive: no runs_on: agent schedule for it yet)")
        while not self._stopped:
            self._wake.clear()
            if self._dirty:
                self._dirty = False
                try:
                    await self.refresh()
                except Exception:
                    log.exception("local scheduler: re-evaluating the catalogs failed")
            if self._stopped:
                break
            now = self._clock()
            try:
                self.tick(now)
            except Exception:
                log.exception("local scheduler: tick failed")
            delay = self.seconds_until_next(self._clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
        log.info("local scheduler stopped")

    def seconds_until_next(self, now: datetime) -> float:
        due = [r.next_due for r in self.registered.values() if r.next_due is not None]
        if not due:
            return MAX_SLEEP_S
        return min(MAX_SLEEP_S, max(0.0, (min(due) - now).total_seconds()))

    # --- catalogs → registrations ----------------------------------------------------------------
    async def refresh(self) -> None:
        """Read the catalogs (live mirrors once synced, the on-disk cache before), resolve
        script-object digests while connected, and apply the result. An inactive scheduler
        only checks whether it must activate (nothing can apply to it otherwise)."""
        if not self.active:
            if not self._may_apply_any():
                return
            self.activate()
        from kanade.core.freeze import FREEZE_KEY
        from kanade.core.scheduling import agent_schedule_set

        fleet = self.fleet
        cache = self._cache or CachedCatalog()
        live_schedules = fleet.schedules.synced and fleet.membership.synced
        groups = list(self._groups())
        if live_schedules:
            everything = parse_schedules(fleet.schedules.values)
            wanted = agent_schedule_set(everything.values(), self.pc_id, groups)
        else:
            cached = {k: _raw_doc(v) for k, v in cache.schedules.items()}
            everything = parse_schedules(cached)
            wanted = sorted(everything.values(), key=lambda s: s.id)
        if fleet.jobs.synced:
            jobs = parse_jobs(fleet.jobs.values)
        else:
            jobs = parse_jobs({k: _raw_doc(v) for k, v in cache.jobs.items()})
        if fleet.freeze.synced:
            freeze = parse_freeze(fleet.freeze.values.get(FREEZE_KEY))
        else:
            freeze = None if cache.freeze is None else parse_freeze(_raw_doc(cache.freeze))
        await self._resolve_digests(wanted, jobs)
        self.jobs = jobs
        self.freeze = freeze
        self.apply(wanted, self._clock())
        if live_schedules and self._saved_ticks:
            self._saved_ticks.clear()  # left-overs are of schedules not applied any more
            self._save_state()  # ... and not kept on disk either
        if live_schedules:
            self._prune_successes(set(everything))
            self._save_catalog(groups)

    async def _resolve_digests(
        self, wanted: Iterable[Schedule], jobs: dict[str, JobManifest]
    ) -> None:
        names = sorted(
            {
                job.execute.script_object
                for s in wanted
                if (job := jobs.get(s.job_id)) is not None and job.execute.script_object
            }
        )
        nc = self._connection()
        if not names or nc is None or not nc.is_connected:
            return
        from nats.js.errors import NotFoundError

        try:
            store = await asyncio.wait_for(
                nc.jetstream().object_store(subjects.OBJ_SCRIPTS), DIGEST_TIMEOUT_S
            )
        except Exception as exc:
            log.warning("cannot open the scripts object store (%s); keeping known digests", exc)
            return
        for name in names:
            try:
                info = await asyncio.wait_for(store.get_info(name), DIGEST_TIMEOUT_S)
            except NotFoundError:
                self.digests.pop(name, None)
                log.warning("script object %r is not in the scripts object store", name)
                continue
            except Exception as exc:
                log.warning("cannot resolve script object %r (%s); keeping its digest", name, exc)
                continue
            digest = getattr(info, "digest", None)
            if digest:
                self.digests[name] = sha256_hex_from_nats_digest(digest)

    def _save_catalog(self, groups: list[str]) -> None:
        from kanade.core.freeze import FREEZE_KEY

        fleet = self.fleet
        schedules: dict[str, Any] = {}
        for sid, reg in self.registered.items():
            raw = fleet.schedules.values.get(sid)
            doc = _json_doc(raw) if raw is not None else None
            schedules[sid] = doc if doc is not None else reg.schedule.model_dump(mode="json")
        jobs: dict[str, Any] = {}
        for reg in self.registered.values():
            job = self.jobs.get(reg.schedule.job_id)
            if job is None:
                continue
            raw = fleet.jobs.values.get(job.id) if fleet.jobs.synced else None
            doc = _json_doc(raw) if raw is not None else None
            jobs[job.id] = (
                doc if doc is not None else job.model_dump(mode="json", exclude_none=True)
            )
        if not schedules and self._cache is None:
            return  # nothing applied, nothing cached: no file to write
        freeze_doc = None
        if self.freeze is not None:
            raw = fleet.freeze.values.get(FREEZE_KEY) if fleet.freeze.synced else None
            freeze_doc = _json_doc(raw) if raw is not None else self.freeze.to_json()
        revoked = (
            sorted(fleet.revocations.values)
            if fleet.revocations.synced
            else list((self._cache or CachedCatalog()).revoked)
        )
        used = {
            job.execute.script_object
            for job_id in jobs
            if (job := self.jobs.get(job_id)) is not None and job.execute.script_object
        }
        catalog = CachedCatalog(
            schedules=schedules,
            jobs=jobs,
            digests={k: v for k, v in self.digests.items() if k in used},
            freeze=freeze_doc,
            groups=groups,
            revoked=revoked,
        )
        self._cache = catalog
        self.store.save_catalog(catalog)

    def _prune_successes(self, known: set[str]) -> None:
        gone = [sid for sid in self.successes if sid not in known]
        if gone:
            for sid in gone:
                del self.successes[sid]
            self.store.save_successes(self.successes)

    def apply(self, wanted: Iterable[Schedule], now: datetime) -> None:
        """Make the registrations exactly ``wanted`` (by id): unregister vanished ones,
        re-register changed ones, register new ones."""
        from kanade.core.scheduling import is_past_one_shot, lower, prev_fire, schedule_set_version

        wanted_by_id = {s.id: s for s in wanted}
        changed = False
        for sid in list(self.registered):
            if sid not in wanted_by_id:
                del self.registered[sid]
                self._saved_ticks.pop(sid, None)
                log.info("schedule %s unregistered (deleted, disabled or no longer targeted)", sid)
                changed = True
        for sid, schedule in wanted_by_id.items():
            digest = digest_of(schedule)
            current = self.registered.get(sid)
            if current is not None and current.digest == digest:
                continue
            try:
                plan = lower(schedule)
            except Exception as exc:
                log.warning("schedule %s cannot be scheduled (%s); ignored", sid, exc)
                continue
            if current is not None:
                # A new definition applies from now on: nothing "missed" under the old one.
                last_tick = now
                log.info("schedule %s changed: re-registered", sid)
            else:
                # A tick saved by an earlier run: occurrences missed while the agent was
                # down follow catchup. Never in the future (a clock stepped backwards).
                last_tick = min(self._saved_ticks.pop(sid, now), now)
                log.info(
                    "schedule %s registered (job %s, %s)",
                    sid,
                    schedule.job_id,
                    schedule.when.shape,
                )
            if plan.is_reconcile and current is None:
                # Evaluate the current poll right away (a newly targeted pc, or a restart,
                # does not wait for the next minute). Re-deciding a poll already fired is
                # harmless: same command, so the claim, the success or the ledger stops it.
                poll = prev_fire(plan, now, self.local_tz)
                if poll is not None and poll - _TINY < last_tick:
                    last_tick = poll - _TINY
            if is_past_one_shot(plan, now, self.local_tz) and last_tick >= now:
                log.warning("schedule %s: its one-shot time is in the past; it will not fire", sid)
            self.registered[sid] = Registered(schedule, plan, digest, last_tick, now)
            changed = True
        if not changed:
            return
        self._save_state()
        version = schedule_set_version(self.applied)
        if version != self.version:
            self.version = version
            log.info("applied schedule set %s (%d schedule(s))", version, len(self.registered))
            if self._on_applied is not None:
                self._on_applied(version)
        self._wake.set()

    # --- ticks --------------------------------------------------------------------------------
    def tick(self, now: datetime) -> None:
        """Decide every registered schedule that is due at ``now``."""
        if not self.registered:
            return
        from kanade.core.scheduling import Fire, Missed, Skip, decide_tick

        changed = False
        for reg in list(self.registered.values()):
            if reg.next_due is None or reg.next_due > now:
                continue
            outcome = decide_tick(
                reg.plan,
                last_tick=reg.last_tick,
                now=now,
                local_tz=self.local_tz,
                freeze=self.freeze,
            )
            changed = changed or outcome.last_tick != reg.last_tick
            reg.last_tick = outcome.last_tick
            reg.next_due = outcome.next_fire
            for decision in outcome.decisions:
                if isinstance(decision, Fire):
                    self._on_fire(reg, decision, now)
                elif isinstance(decision, Skip):
                    self._on_skip(reg, decision, now)
                elif isinstance(decision, Missed):
                    more = " (and more)" if decision.more else ""
                    log.warning(
                        "schedule %s: %d occurrence(s) missed%s, first %s, last %s (catchup: %s)",
                        reg.plan.schedule_id,
                        len(decision.nominals),
                        more,
                        iso(decision.nominals[0]),
                        iso(decision.nominals[-1]),
                        reg.plan.catchup,
                    )
        if changed:
            self._save_state()

    def _on_skip(self, reg: Registered, skip: Skip, now: datetime) -> None:
        if skip.reason == "deadline_passed":
            # Reported through the normal path: the agent's deadline gate skips it (125).
            log.warning("schedule %s: %s", skip.schedule_id, skip.detail)
            self._dispatch(reg, skip.nominal, now, claim=False)
            return
        self.skipped_ticks += 0 if skip.quiet else 1
        level = logging.DEBUG if skip.quiet else logging.INFO
        log.log(
            level,
            "schedule %s: occurrence %s skipped: %s",
            skip.schedule_id,
            iso(skip.nominal),
            skip.detail,
        )

    def _on_fire(self, reg: Registered, fire: Fire, now: datetime) -> None:
        from kanade.core.scheduling import pc_decision

        dedup = reg.plan.dedup
        if dedup is not None:
            decision = pc_decision(
                dedup,
                self.pc_id,
                now=now,
                alive=True,
                last_success=self.successes.get(reg.plan.schedule_id),
            )
            if not decision.would_fire:
                log.debug(
                    "schedule %s: poll %s: not firing: %s",
                    reg.plan.schedule_id,
                    iso(fire.nominal),
                    decision.detail,
                )
                return
            log.info(
                "schedule %s: poll %s fires: %s",
                reg.plan.schedule_id,
                iso(fire.nominal),
                decision.detail,
            )
        elif fire.caught_up:
            log.info(
                "schedule %s: catching up occurrence %s (%s late)",
                reg.plan.schedule_id,
                iso(fire.nominal),
                fire.late,
            )
        self._dispatch(reg, fire.nominal, now, claim=True)

    def _warn_once(self, schedule_id: str, what: str) -> None:
        key = (schedule_id, what)
        if key in self._warned:
            log.debug("schedule %s: %s", schedule_id, what)
            return
        self._warned.add(key)
        log.warning("schedule %s: %s", schedule_id, what)

    def _dispatch(
        self,
        reg: Registered,
        nominal: datetime,
        now: datetime,
        *,
        claim: bool,
    ) -> None:
        from kanade.core.dispatch import build_command
        from kanade.core.models.target import Target
        from kanade.core.scheduling import (
            claim_until,
            deadline_at,
            exec_id_for,
            occurrence_id,
            request_id_for,
        )

        schedule, plan = reg.schedule, reg.plan
        sid = schedule.id
        job = self.jobs.get(schedule.job_id)
        if job is None:
            self._warn_once(sid, f"job {schedule.job_id!r} is not in the job catalog; not fired")
            return
        if (
            not self.fleet.revocations.synced
            and self._cache is not None
            and job.id in self._cache.revoked
        ):
            # Restarted offline: the agent's gate has no revocations yet, the cache does.
            self._warn_once(sid, f"job {job.id!r} was revoked (cached state); not fired")
            return
        digest: str | None = None
        if job.execute.script_object:
            digest = self.digests.get(job.execute.script_object)
            if digest is None:
                self._warn_once(
                    sid,
                    f"job {job.id!r}: the sha256 of script object {job.execute.script_object!r} "
                    "could not be resolved from the object store; not fired",
                )
                return
        occurrence = occurrence_id(sid, nominal)
        request_id = request_id_for(occurrence, self.pc_id)
        try:
            cmd = build_command(
                job,
                exec_id=exec_id_for(occurrence),
                request_id=request_id,
                address=Target(pcs=[self.pc_id]),
                issued_at=nominal,
                deadline_at=deadline_at(plan, nominal),  # deterministic per occurrence
                jitter_s=plan.jitter.total_seconds(),
                schedule_id=sid,
                nominal_time=nominal,
                script_sha256=digest,
                retry=schedule.retry,
            )
        except ValueError as exc:
            self._warn_once(sid, f"job {job.id!r} cannot be dispatched ({exc}); not fired")
            return
        if claim:
            until = claim_until(
                now,
                plan.jitter,
                timedelta(seconds=cmd.timeout_s),
                plan.retry_max,
                plan.retry_backoff,
            )
            attempt = self.claims.try_claim(sid, request_id, now=now, until=until)
            if not attempt.granted:
                self.skipped_ticks += 1
                log.info(
                    "schedule %s: occurrence %s skipped: the previous run (%s) still holds "
                    "the claim until %s",
                    sid,
                    iso(nominal),
                    attempt.claim.owner,
                    iso(attempt.claim.until),
                )
                return
            if attempt.warning:
                log.warning("%s", attempt.warning)
            self._save_state()
        admission = self._submit(cmd)
        if admission is Admission.NEW:
            self.fired += 1
            log.info("schedule %s: fired occurrence %s (request %s)", sid, iso(nominal), request_id)
            return
        log.info(
            "schedule %s: occurrence %s was already admitted (%s); not run again",
            sid,
            iso(nominal),
            admission.value,
        )
        if claim and not self._in_flight(request_id) and self.claims.release(sid, request_id):
            self._save_state()

    # --- results ------------------------------------------------------------------------------
    def _is_local_fire(self, cmd: Command) -> bool:
        sid = cmd.schedule_id
        if not self.active or sid is None or cmd.nominal_time is None:
            return False
        from kanade.core.scheduling import occurrence_id, request_id_for

        held = self.claims.get(sid)
        if held is not None and held.owner == cmd.request_id:
            return True
        try:
            derived = request_id_for(occurrence_id(sid, cmd.nominal_time), self.pc_id)
        except ValueError:
            return False
        return sid in self.registered and derived == cmd.request_id

    def on_finished(self, cmd: Command, result: Result) -> None:
        """A command's result was recorded: release its claim (if it still holds it) and
        record a success when the script ran and exited 0."""
        if not self._is_local_fire(cmd):
            return
        sid = cmd.schedule_id
        assert sid is not None
        finish = self.claims.finish(
            sid,
            cmd.request_id,
            ran=not result.skipped and result.started_at is not None,
            exit_code=result.exit_code,
            skipped=result.skipped,
        )
        if finish.released:
            self._save_state()
        reg = self.registered.get(sid)
        if finish.record_success and reg is not None and reg.plan.is_reconcile:
            # Only per_pc dedup reads successes: calendar/cron fire every occurrence.
            when = cmd.nominal_time or result.finished_at
            previous = self.successes.get(sid)
            if previous is None or when > previous:
                self.successes[sid] = when
                self.store.save_successes(self.successes)
                log.info("schedule %s: success recorded (%s)", sid, iso(when))
        elif not finish.record_success and not result.skipped:
            log.info(
                "schedule %s: run %s exited %s (not a success)",
                sid,
                cmd.request_id,
                result.exit_code,
            )
        self._wake.set()

    # --- persistence --------------------------------------------------------------------------
    def _save_state(self) -> None:
        ticks = dict(self._saved_ticks)
        ticks.update({sid: reg.last_tick for sid, reg in self.registered.items()})
        self.store.save_state(ticks, self.claims.snapshot())


__all__ = [
    "LocalScheduler",
    "Registered",
    "local_zone",
    "might_apply",
    "parse_freeze",
    "parse_jobs",
    "parse_schedules",
    "sha256_hex_from_nats_digest",
]
