"""Schedule use cases behind ``/api/schedules`` (SPEC §2.2, §4.4, §4.5): create, replace,
enable, disable, delete (each audited), the status view the reads add (next fire, last
fire, counters, recent decisions), the preview and schedule-set drift.

A schedule that starts firing on the backend (created, enabled, switched to
``runs_on: backend``) starts *now*: its tick is reset so nothing from before is caught up.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from datetime import timedelta, tzinfo
from typing import Any

from sqlalchemy.engine import Connection

from kanade.backend.catalog import dispatch_state as state
from kanade.backend.catalog.freeze import read_freeze
from kanade.backend.catalog.schedules import ScheduleCatalog, kv_keys, schedule_document
from kanade.backend.errors import Invalid, NotFound
from kanade.backend.messaging.audit import publish_audit
from kanade.backend.services import schedule_views as views
from kanade.backend.store import agent_decisions
from kanade.backend.store import agents as agent_rows
from kanade.backend.store import scheduling as store
from kanade.backend.store.database import Database
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.instants import system_clock
from kanade.core.models.schedule import Schedule
from kanade.core.scheduling import lower
from kanade.core.validation import parse_schedule


def _recent(
    conn: Connection, schedule_id: str, limit: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The newest decisions of the central scheduler and of the agents."""
    return (
        store.recent_decisions(conn, schedule_id=schedule_id, limit=limit),
        agent_decisions.recent(conn, schedule_id, limit),
    )


def _is_reconcile(schedule: Schedule) -> bool:
    return schedule.when.shape in ("per_pc", "per_target")


def _fires_from_backend(schedule: Schedule) -> bool:
    return schedule.enabled and schedule.runs_on == "backend"


class ScheduleService:
    def __init__(
        self,
        db: Database,
        bus: Callable[[], Bus],
        *,
        local_tz: tzinfo,
        reconcile_poll: timedelta,
    ) -> None:
        self._db = db
        self._bus = bus
        self._local_tz = local_tz
        self._reconcile_poll = reconcile_poll

    def _catalog(self) -> ScheduleCatalog:
        return ScheduleCatalog(self._bus())

    async def parse(self, data: Any) -> Schedule:
        """A schedule from a loaded document, strictly (``job_id`` checked against the
        job catalog)."""
        known = await kv_keys(self._bus(), subjects.KV_JOBS)
        return parse_schedule(data, strict=True, known_job_ids=known)

    async def _reset_tick(self, schedule_id: str) -> None:
        kv = await self._bus().kv(subjects.KV_DISPATCH)
        await state.put_tick(kv, schedule_id, system_clock())

    async def _audit(self, action: str, actor: str, details: dict[str, Any]) -> None:
        await publish_audit(self._bus, action, actor, details)

    async def view(self, schedules: list[Schedule], *, decisions: int = 0) -> list[dict[str, Any]]:
        """Each schedule's document with its ``status`` (and recent ``decisions``)."""
        bus = self._bus()
        now = system_clock()
        freeze = await read_freeze(bus)
        revoked = await kv_keys(bus, subjects.KV_REVOCATIONS)
        ids = [s.id for s in schedules]
        # Reconcile shapes: what a poll now decides per pc, so "next fire" is when a pc is
        # really due (an enabled per_pc once whose pcs all ran shows none, not a poll).
        reconcile = [s.id for s in schedules if s.enabled and _is_reconcile(s)]

        def read(conn: Connection) -> tuple[Any, ...]:
            return (
                store.stats(conn, ids),
                agent_decisions.stats(conn, ids),
                agent_rows.list_agents(conn) if reconcile else [],
                store.reconcile_facts(conn, reconcile) if reconcile else {},
            )

        stats, local, agents, facts = await self._db.read(read)
        marks: dict[str, Any] = {}
        if reconcile:
            marks = await state.load_marks(bus, reconcile[0] if len(reconcile) == 1 else None)
        fleet = views.Fleet.of(agents, now)
        out: list[dict[str, Any]] = []
        for s in schedules:
            item = schedule_document(s)
            due = None
            if s.id in facts:
                due = views.reconcile_due(
                    s,
                    lower(s, reconcile_poll=self._reconcile_poll),
                    now=now,
                    fleet=fleet,
                    facts=facts[s.id],
                    marks=marks.get(s.id, {}),
                )
            item["status"] = views.schedule_status(
                s,
                views.combined_stats(stats.get(s.id), local.get(s.id)),
                now=now,
                local_tz=self._local_tz,
                freeze=freeze,
                reconcile_poll=self._reconcile_poll,
                due=due,
            )
            item["status"]["job_revoked"] = s.job_id in revoked
            if decisions:
                mine, theirs = await self._db.read(
                    functools.partial(_recent, schedule_id=s.id, limit=decisions)
                )
                rows = views.merged_decisions(mine, theirs, decisions)
                item["decisions"] = [views.decision_view(r) for r in rows]
            out.append(item)
        return out

    async def list_all(self) -> list[dict[str, Any]]:
        return await self.view(await self._catalog().list())

    async def get(self, schedule_id: str, *, decisions: int) -> dict[str, Any]:
        schedule = await self._catalog().require(schedule_id)
        (item,) = await self.view([schedule], decisions=decisions)
        return item

    async def create(self, schedule: Schedule, *, actor: str) -> tuple[dict[str, Any], bool]:
        """The stored schedule's view, and whether it was created (False: identical to
        the stored one)."""
        catalog = self._catalog()
        existing = await catalog.get(schedule.id)
        if existing is None and _fires_from_backend(schedule):
            await self._reset_tick(schedule.id)
        created = await catalog.create(schedule)
        if created:
            await self._audit(
                "schedule_create", actor, {"schedule_id": schedule.id, "job_id": schedule.job_id}
            )
        (item,) = await self.view([schedule])
        return item, created

    async def replace(self, schedule_id: str, schedule: Schedule, *, actor: str) -> dict[str, Any]:
        """Edits apply from the next tick; the body's id must be the URL's."""
        if schedule.id != schedule_id:
            raise Invalid.at("id", f"{schedule.id!r} does not match the URL's {schedule_id!r}")
        catalog = self._catalog()
        current = await catalog.require(schedule_id)
        if _fires_from_backend(schedule) and not _fires_from_backend(current):
            await self._reset_tick(schedule_id)
        await catalog.replace(schedule)
        await self._audit(
            "schedule_update", actor, {"schedule_id": schedule_id, "job_id": schedule.job_id}
        )
        (item,) = await self.view([schedule])
        return item

    async def delete(self, schedule_id: str, *, actor: str) -> dict[str, Any]:
        bus = self._bus()
        removed = await ScheduleCatalog(bus).delete(schedule_id)
        kv = await bus.kv(subjects.KV_DISPATCH)
        with contextlib.suppress(Exception):  # the tick key may not exist: nothing to clean
            await kv.delete(state.tick_key(schedule_id))
        await self._audit(
            "schedule_delete", actor, {"schedule_id": schedule_id, "job_id": removed.job_id}
        )
        return {"id": schedule_id, "deleted": True, "job_id": removed.job_id}

    async def enable(self, schedule_id: str, *, actor: str) -> dict[str, Any]:
        """It fires from its next occurrence after now (nothing missed is caught up)."""
        catalog = self._catalog()
        current = await catalog.require(schedule_id)
        if not current.enabled and current.runs_on == "backend":
            await self._reset_tick(schedule_id)
        old, new = await catalog.set_enabled(schedule_id, True)
        await self._audit(
            "schedule_enable", actor, {"schedule_id": schedule_id, "was_enabled": old.enabled}
        )
        (item,) = await self.view([new])
        return item

    async def disable(self, schedule_id: str) -> tuple[Schedule, Schedule]:
        """Soft: nothing fires any more, runs in flight continue. The old and new schedule."""
        return await self._catalog().set_enabled(schedule_id, False)

    async def in_flight_execs(self, schedule_id: str) -> list[str]:
        return list(
            await self._db.read(lambda conn: store.in_flight_execs_of_schedule(conn, schedule_id))
        )

    async def disabled(
        self,
        old: Schedule,
        new: Schedule,
        *,
        actor: str,
        cascade: bool,
        cascade_kill: bool,
        revoked: dict[str, Any] | None,
        killed: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """Audit a disable (and what its cascade did); the disabled schedule's view."""
        await self._audit(
            "schedule_disable",
            actor,
            {
                "schedule_id": new.id,
                "was_enabled": old.enabled,
                "cascade": bool(cascade or cascade_kill),
                "cascade_kill": cascade_kill,
                "killed": [k["exec_id"] for k in killed],
            },
        )
        (item,) = await self.view([new])
        return {
            **item,
            "revoked": revoked,
            "killed": [{"exec_id": k["exec_id"], "status": k.get("status")} for k in killed],
        }

    async def preview(self, schedule_id: str, *, n: int) -> dict[str, Any]:
        """The next ``n`` gated fire times; for reconcile shapes every targeted pc with
        ``would_fire`` and why."""
        bus = self._bus()
        schedule = await ScheduleCatalog(bus).require(schedule_id)
        now = system_clock()
        reconcile = schedule.when.shape in ("per_pc", "per_target")

        def facts(conn: Connection) -> tuple[Any, Any]:
            agents = agent_rows.list_agents(conn)
            f = store.reconcile_facts(conn, [schedule_id]).get(schedule_id) if reconcile else None
            return agents, f

        agents, f = await self._db.read(facts)
        marks = {}
        if reconcile:
            loaded = await state.load_marks(bus, schedule_id)
            marks = loaded.get(schedule_id, {})
        return views.schedule_preview(
            schedule,
            now=now,
            local_tz=self._local_tz,
            n=n,
            freeze=await read_freeze(bus),
            agents=agents,
            facts=f,
            marks=marks,
            reconcile_poll=self._reconcile_poll,
        )

    async def drift(self, pc_id: str | None = None) -> list[dict[str, Any]]:
        """Per agent: expected vs applied schedule-set version (``runs_on: agent``)."""
        schedules = await self._catalog().list()
        if pc_id is None:
            agents = await self._db.read(agent_rows.list_agents)
        else:
            row = await self._db.read(lambda conn: agent_rows.get_agent(conn, pc_id))
            if row is None:
                raise NotFound(f"agent {pc_id!r} has never sent a heartbeat", pc_id=pc_id)
            agents = [row]
        return views.drift_rows(schedules, agents)
