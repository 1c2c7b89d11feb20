"""Refusing names that match nothing known (SPEC §5): a pc, group or job a request names
is checked against what the backend knows, and an unknown one is refused with its close
matches (:mod:`kanade.core.names`) unless the caller insists (``force``).

Known pcs: every pc that ever sent a heartbeat (offline ones included), enrolled pcs and
pcs with a KV group membership. Known groups: those in KV and those agents report (their
``--group`` flags). Known jobs: the catalog.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from kanade.backend.catalog.groups import group_list
from kanade.backend.catalog.schedules import kv_keys
from kanade.backend.errors import Invalid, UnknownName
from kanade.backend.services.base import Service
from kanade.backend.store import agents, enrolment
from kanade.bus import kvcas
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
        """The pcs and groups this backend knows of."""
        bus = self._bus()
        kv = await bus.kv(subjects.KV_GROUPS)
        kv_pcs: set[str] = set()
        kv_groups: set[str] = set()
        for key in await kvcas.keys(kv):
            names = group_list((await kvcas.read(kv, key)).value)
            if names:
                kv_pcs.add(key)
                kv_groups.update(names)

        def read(conn: Connection) -> tuple[set[str], set[str], set[str]]:
            pcs, groups = agents.names(conn)
            return pcs, groups, enrolment.enrolled_ids(conn)

        pcs, groups, enrolled = await self._db.read(read)
        return Known(frozenset(pcs | enrolled | kv_pcs), frozenset(groups | kv_groups))

    async def check_target(
        self, target: Target, *, rollout: Rollout | None = None, force: bool = False
    ) -> None:
        """Refuse a target (and its rollout's ``group:``/``pcs:`` waves) naming an unknown
        pc or group, unless ``force``."""
        if force:
            return
        waves = rollout.waves if rollout is not None else []
        if not (target.pcs or target.groups or any(w.group or w.pcs for w in waves)):
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
        if force or not pcs:
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
            known: frozenset[str] = frozenset(await kv_keys(self._bus(), subjects.KV_JOBS))
        else:
            fleet = await self.fleet()
            known = fleet.pcs if kind == "pc" else fleet.groups
        u = unknown_name(kind, path, name, known)
        refuse([u] if u else [], overridable=overridable)


def refuse(found: list[Unknown], *, overridable: bool = True) -> None:
    """:class:`UnknownName` naming each unknown name, or nothing when there is none."""
    if not found:
        return
    errors = [u.error() for u in found]
    if not overridable:
        raise Invalid(describe(found), errors=errors)
    raise UnknownName(describe(found), errors=errors)
