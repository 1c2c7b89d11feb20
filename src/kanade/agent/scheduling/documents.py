"""Reading the catalogs' raw KV documents for the local scheduler: tolerant, cached parsing
of schedules and jobs, and :func:`might_apply`, the cheap look at a raw
schedule that decides whether the scheduling core must be loaded at all (see "Loaded on
demand" in ``docs/agent-local-scheduler.md``).
"""

from __future__ import annotations

import functools
import json
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from kanade.core.bounds import loads as json_loads

# The scheduling core is imported where it is used; these names are for annotations only.
if TYPE_CHECKING:
    from kanade.core.models.job import JobManifest
    from kanade.core.models.schedule import Schedule

log = logging.getLogger("kanade.agent.scheduler")

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
        data = json_loads(raw)
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


def json_doc(raw: bytes) -> Any:
    try:
        return json_loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def raw_doc(doc: Any) -> bytes:
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
        doc = json_loads(raw)
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
