"""Schedule-set version (SPEC §3.6, §2.7): the hash an agent reports for the schedules it
has applied, and the backend recomputes from what it expects that agent to apply.

* order-independent: the set is hashed as the sorted list of per-schedule digests;
* changes when any field that affects firing changes (``when``, ``target``, ``tz``,
  ``active``, ``constraints``, ``jitter``, ``catchup``, ``job_id`` …); ``description`` is
  left out (it changes nothing an agent does);
* stable across versions and spellings: fields at their default value are left out (so
  writing ``enabled: true`` or ``catchup: once`` equals omitting it, and a field added in a
  newer release at its default does not look like drift), unknown (extra) fields are left
  out, and values are hashed in their canonical JSON form (``90m`` and ``1h30m`` are the
  same duration).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, Final

from pydantic import BaseModel

from kanade.core.digests import SET_VERSION_PREFIX, digest_set_version
from kanade.core.models.schedule import Schedule

VERSION_PREFIX: Final = SET_VERSION_PREFIX
IGNORED_FIELDS: Final = frozenset({"description"})


def _strip_extras(model: BaseModel, dumped: Any) -> Any:
    """``dumped`` (a JSON dump of ``model``) without keys for ``model``'s extra fields."""
    if not isinstance(dumped, dict):
        return dumped  # a custom serializer (e.g. ``per_pc: once``) chose a scalar
    known: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        key = info.alias or name
        if key not in dumped:
            continue
        value = getattr(model, name)
        known[key] = _walk(value, dumped[key])
    return known


def _walk(value: Any, dumped: Any) -> Any:
    if isinstance(value, BaseModel):
        return _strip_extras(value, dumped)
    if isinstance(value, list | tuple) and isinstance(dumped, list):
        return [_walk(v, d) for v, d in zip(value, dumped, strict=False)]
    return dumped


def schedule_digest(schedule: Schedule) -> str:
    """The sha256 of one schedule's canonical JSON (fields as described above)."""
    dumped = schedule.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    body = _strip_extras(schedule, dumped)
    for name in IGNORED_FIELDS:
        body.pop(name, None)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def schedule_set_version(schedules: Iterable[Schedule]) -> str:
    """``v1:<32 hex>`` for a set of schedules, in any order (a multiset: duplicates count)."""
    return digest_set_version(schedule_digest(s) for s in schedules)


def applies_to_agent(schedule: Schedule, pc_id: str, groups: Iterable[str]) -> bool:
    """An enabled ``runs_on: agent`` schedule whose target includes this agent."""
    return (
        schedule.enabled
        and schedule.runs_on == "agent"
        and schedule.target.matches(pc_id, list(groups))
    )


def agent_schedule_set(
    schedules: Iterable[Schedule], pc_id: str, groups: Iterable[str]
) -> list[Schedule]:
    """The schedules the agent ``pc_id`` (member of ``groups``) should apply, by id."""
    member_of = list(groups)
    chosen = [s for s in schedules if applies_to_agent(s, pc_id, member_of)]
    return sorted(chosen, key=lambda s: s.id)


def expected_version(schedules: Iterable[Schedule], pc_id: str, groups: Iterable[str]) -> str:
    """What the backend expects ``pc_id`` to report (drift = reported != expected)."""
    return schedule_set_version(agent_schedule_set(schedules, pc_id, groups))
