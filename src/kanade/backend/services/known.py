"""Refusing names that match nothing known (SPEC §5): a pc, group or job a request names
is checked against what the backend knows, and an unknown one is refused with its close
matches (:mod:`kanade.core.names`) unless the caller insists (``force``).

Known pcs: every pc that ever sent a heartbeat (offline ones included), enrolled pcs and
pcs with a KV group membership. Known groups: those agents report (their ``--group`` flags
and KV membership) and those in KV. Known jobs: the catalog.

Cheap on the dispatch path: the names a request gives are looked up directly (an indexed
query, a KV get per pc); only a name found nowhere costs a scan — of everything known,
for the close matches of the refusal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from kanade.backend.catalog.groups import group_list
from kanade.backend.catalog.schedules import kv_keys
from kanade.backend.errors import Invalid, UnknownName
from kanade.backend.services.base import Service
from kanade.backend.store import agents, enrolment
from kanade.bus import kvcas
from kanade.bus.kvsnapshot import kv_snapshot
from kanade.core import subjects
from kanade.core.models.target import Target
from kanade.core.models.waves import Rollout
from kanade.core.names import NameKind, describe, unknown_name, unknown_names
from kanade.core.names import UnknownName as Unknown


@dataclass(frozen=True)
class Known:
    pcs: frozenset[str]
    groups: frozenset[str]


class KnownNames(Service):
    async def fleet(self) -> Known:
        """Every pc and group this backend knows of (the slow path: a refusal's matches)."""
        kv_pcs, kv_groups = await self._kv_membership()

        def read(conn: Connection) -> tuple[set[str], set[str], set[str]]:
            pcs, groups = agents.names(conn)
            return pcs, groups, enrolment.enrolled_ids(conn)

        pcs, groups, enrolled = await self._db.read(read)
        return Known(frozenset(pcs | enrolled | kv_pcs), frozenset(groups | kv_groups))

    async def _kv_membership(self) -> tuple[set[str], set[str]]:
        """Pcs with a KV membership, and every group one holds (one pass over the bucket)."""
        pcs: set[str] = set()
        groups: set[str] = set()
        snapshot = await kv_snapshot(self._bus().js, subjects.KV_GROUPS)
        for key, (raw, _) in snapshot.items():
            names = group_list(raw)
            if names:
                pcs.add(key)
                groups.update(names)
        return pcs, groups

    async def _unknown_pcs(self, names: Iterable[str]) -> set[str]:
        """Those of ``names`` no heartbeat, enrolment or KV membership knows."""
        wanted = set(names)
        if not wanted:
            return set()
        found = await self._db.read(
            lambda conn: agents.existing(conn, wanted) | enrolment.existing(conn, wanted)
        )
        missing = wanted - found
        if missing:
            kv = await self._bus().kv(subjects.KV_GROUPS)
            for pc in list(missing):
                if group_list((await kvcas.read(kv, pc)).value):
                    missing.discard(pc)
        return missing

    async def _unknown_groups(self, names: Iterable[str]) -> set[str]:
        """Those of ``names`` no agent reports and no KV membership holds."""
        wanted = set(names)
        if not wanted:
            return set()
        missing = wanted - await self._db.read(agents.reported_groups)
        if missing:
            missing -= (await self._kv_membership())[1]
        return missing

    async def check_target(
        self, target: Target, *, rollout: Rollout | None = None, force: bool = False
    ) -> None:
        """Refuse a target (and its rollout's ``group:``/``pcs:`` waves) naming an unknown
        pc or group, unless ``force``."""
        if force:
            return
        waves = rollout.waves if rollout is not None else []
        pcs = [*target.pcs, *(pc for w in waves for pc in w.pcs or [])]
        groups = [*target.groups, *(w.group for w in waves if w.group)]
        bad_pcs = await self._unknown_pcs(pcs)
        bad_groups = await self._unknown_groups(groups)
        if not (bad_pcs or bad_groups):
            return
        known = await self.fleet()
        found = [
            *unknown_names("pc", "target.pcs", target.pcs, known.pcs),
            *unknown_names("group", "target.groups", target.groups, known.groups),
        ]
        for i, w in enumerate(waves):
            if w.group:
                u = unknown_name("group", f"rollout.waves[{i}].group", w.group, known.groups)
                found += [u] if u else []
            found += unknown_names("pc", f"rollout.waves[{i}].pcs", w.pcs or [], known.pcs)
        refuse(found)

    async def check_pcs(self, pcs: Sequence[str], path: str, *, force: bool = False) -> None:
        """Refuse pc ids nothing knows, unless ``force``."""
        if force or not await self._unknown_pcs(pcs):
            return
        known = await self.fleet()
        refuse(unknown_names("pc", path, list(pcs), known.pcs))

    async def check_one(
        self,
        kind: NameKind,
        name: str,
        path: str,
        *,
        force: bool = False,
        overridable: bool = True,
    ) -> None:
        """Refuse one pc, group or job name nothing knows, unless ``force``; a request
        with no way to insist (``overridable=False``, e.g. a ping) gets a plain
        :class:`Invalid`."""
        if force:
            return
        if kind == "job":
            jobs = await kv_keys(self._bus(), subjects.KV_JOBS)
            u = unknown_name(kind, path, name, jobs)
        else:
            lookup = self._unknown_pcs if kind == "pc" else self._unknown_groups
            if not await lookup([name]):
                return
            fleet = await self.fleet()
            u = unknown_name(kind, path, name, fleet.pcs if kind == "pc" else fleet.groups)
        refuse([u] if u else [], overridable=overridable)


def refuse(found: list[Unknown], *, overridable: bool = True) -> None:
    """:class:`UnknownName` naming each unknown name, or nothing when there is none."""
    if not found:
        return
    errors = [u.error() for u in found]
    if not overridable:
        raise Invalid(describe(found), errors=errors)
    raise UnknownName(describe(found), errors=errors)
