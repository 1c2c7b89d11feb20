"""Group membership kept in KV (SPEC §3.2, §3.7): bucket ``kanade_groups``, key = pc id,
value = each group with the instant the pc joined it
(:class:`~kanade.core.models.membership.Membership`), merged by the agent with its static
``--group`` flags. The instant is this backend's clock, like a command's ``issued_at``: the
agent runs a group's command only if it was issued after the pc joined (SPEC §3.2).

Changes are compare-and-sets on the key's revision, so two operators changing one pc's
membership at once never lose an update. Every change is audited.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from kanade.backend.catalog.groups import group_list, kv_groups_of
from kanade.backend.errors import Invalid
from kanade.backend.messaging.audit import publish_audit
from kanade.backend.services import kvwrite
from kanade.backend.services.base import Service
from kanade.backend.services.slugs import require_slug
from kanade.backend.store import agents
from kanade.bus.kvsnapshot import kv_snapshot
from kanade.core import subjects
from kanade.core.models.membership import Membership

log = structlog.get_logger(__name__)

__all__ = ["GroupService", "group_list", "kv_groups_of"]


class GroupService(Service):
    async def groups(self) -> dict[str, Any]:
        """Membership from KV, and every group agents report in their heartbeats."""
        bus = self._bus()
        # A snapshot, not kv.keys(): that is a KV watcher, a broker consumer per read.
        snapshot = await kv_snapshot(bus.js, subjects.KV_GROUPS)
        membership: dict[str, list[str]] = {}
        for key, (raw, _) in sorted(snapshot.items()):
            groups = group_list(raw)
            if groups:
                membership[key] = groups
        rows = await self._db.read(agents.list_agents)
        reported = {str(a["pc_id"]): list(a.get("groups") or []) for a in rows}
        names = {g for gs in membership.values() for g in gs} | {
            g for gs in reported.values() for g in gs
        }
        items = []
        for g in sorted(names):
            items.append(
                {
                    "group": g,
                    "members": sorted(pc for pc, gs in membership.items() if g in gs),
                    "reported": sorted(pc for pc, gs in reported.items() if g in gs),
                }
            )
        return {"items": items, "total": len(items), "membership": membership}

    async def set_groups(self, pc_id: str, groups: list[str], *, actor: str) -> dict[str, Any]:
        require_slug(pc_id, "pc_id")
        for g in groups:
            require_slug(g, "group")
        wanted = sorted(set(groups))
        return await self._change_membership(
            pc_id, lambda _old: wanted, actor=actor, action={"set": wanted}
        )

    async def add_members(self, group: str, pcs: list[str], *, actor: str) -> dict[str, Any]:
        require_slug(group, "group")
        if not pcs:
            raise Invalid.at("pcs", "list at least one pc")
        out = []
        for pc in pcs:
            require_slug(pc, "pc_id")
        for pc in pcs:
            out.append(
                await self._change_membership(
                    pc, lambda old: sorted({*old, group}), actor=actor, action={"add": group}
                )
            )
        return {"group": group, "items": out}

    async def remove_member(self, group: str, pc_id: str, *, actor: str) -> dict[str, Any]:
        require_slug(group, "group")
        require_slug(pc_id, "pc_id")
        done = await self._change_membership(
            pc_id,
            lambda old: [g for g in old if g != group],
            actor=actor,
            action={"remove": group},
        )
        # A group of the agent's own --group flags stays whatever KV says: say so, or the
        # removal looks done while the pc stays in the group.
        agent = await self._db.read(lambda conn: agents.get_agent(conn, pc_id))
        flags = set((agent or {}).get("static_groups") or [])
        return {**done, "agent_flag_groups": sorted(flags)}

    async def _change_membership(
        self,
        pc_id: str,
        change: Callable[[list[str]], list[str]],
        *,
        actor: str,
        action: dict[str, Any],
    ) -> dict[str, Any]:
        bus = self._bus()
        kv = await bus.kv(subjects.KV_GROUPS)

        def mutate(raw: bytes | None) -> bytes | None:
            old = Membership.decode(raw)
            new = sorted(set(change(old.names)))
            if not new:
                return None
            # Keep the stored bytes when nothing changed (no needless KV write, and every
            # group kept keeps the instant it was joined).
            if raw is not None and old.names == new:
                return raw
            return old.with_groups(new, self._clock()).encode()

        done = await kvwrite.change(kv, pc_id, mutate)
        before, after = group_list(done.old), group_list(done.new)
        since = Membership.decode(done.new).groups
        if before != after:
            await publish_audit(
                self._bus,
                "group_set",
                actor,
                {"pc_id": pc_id, "before": before, "after": after, **action},
                at=self._clock(),
            )
            log.info("group membership changed", pc_id=pc_id, before=before, after=after)
        return {
            "pc_id": pc_id,
            "groups": after,
            "since": since,
            "previous": before,
            "changed": before != after,
        }
