"""Group membership as stored in KV ``kanade_groups`` (key = pc id, value = a
:class:`~kanade.core.models.membership.Membership`: each group with the instant the pc
joined it), read by the group service and by command-consumer provisioning."""

from __future__ import annotations

from kanade.bus import kvcas
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.ids import is_slug
from kanade.core.models.membership import Membership


def group_list(raw: bytes | None) -> list[str]:
    """A stored membership value as a sorted list of names (anything else: empty)."""
    return Membership.decode(raw).names


async def kv_groups_of(bus: Bus, pc_id: str) -> list[str]:
    """The pc's membership in KV."""
    return group_list((await kvcas.read(await bus.kv(subjects.KV_GROUPS), pc_id)).value)


async def valid_groups_of(bus: Bus, pc_id: str) -> list[str]:
    """The pc's membership in KV, keeping only names that are slugs: each becomes a
    subject token of a consumer filter, where a ``*``, ``>`` or ``.`` would widen it."""
    return [g for g in await kv_groups_of(bus, pc_id) if is_slug(g)]


__all__ = ["group_list", "kv_groups_of", "valid_groups_of"]
