"""The schedule catalog: KV bucket ``kanade_schedules`` (key = schedule id, value = the
schedule's JSON, ``model_dump(mode="json", by_alias=True, exclude_none=True)``).

It lives in KV, like the job catalog, so both schedulers read the same thing: the backend's
central scheduler (``runs_on: backend``) and every agent's local one (``runs_on: agent``).
Writers are strict (the API validates with ``known_job_ids`` from the job catalog); readers
are tolerant (an entry written by a newer backend keeps working). Every write is a
compare-and-set on the key's revision, so two operators editing one schedule never lose an
update silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import structlog
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from kanade.backend.errors import Conflict, NotFound
from kanade.bus.connection import Bus
from kanade.bus.kvcas import CasConflict, compare_and_set, is_wrong_last_sequence
from kanade.bus.kvsnapshot import kv_snapshot
from kanade.core import subjects
from kanade.core.bounds import loads as json_loads
from kanade.core.ids import is_slug
from kanade.core.models.schedule import Schedule
from kanade.core.validation import parse_schedule

log = structlog.get_logger(__name__)


def schedule_document(schedule: Schedule) -> dict[str, Any]:
    """The canonical JSON form of a schedule (durations in the human grammar)."""
    return schedule.model_dump(mode="json", by_alias=True, exclude_none=True)


def encode_schedule(schedule: Schedule) -> bytes:
    return json.dumps(schedule_document(schedule), sort_keys=True, separators=(",", ":")).encode()


def decode_schedule(raw: bytes) -> Schedule:
    """Tolerant read of a stored schedule; ``ValueError`` when it cannot be read at all."""
    return parse_schedule(json_loads(raw), strict=False)


def _decode_stored(schedule_id: str, raw: bytes) -> Schedule:
    try:
        return decode_schedule(raw)
    except ValueError as exc:
        raise Conflict(
            f"the stored schedule {schedule_id!r} cannot be read: {exc}; upload it again",
            schedule_id=schedule_id,
        ) from None


async def kv_keys(bus: Bus, bucket: str) -> set[str]:
    """The live keys of ``bucket`` (robust, see :func:`kanade.bus.kvsnapshot.kv_snapshot`)."""
    return set(await kv_snapshot(bus.js, bucket))


class ScheduleCatalog:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def _kv(self) -> KeyValue:
        return await self._bus.kv(subjects.KV_SCHEDULES)

    async def get_with_revision(self, schedule_id: str) -> tuple[Schedule | None, int | None]:
        if not is_slug(schedule_id):
            return None, None
        kv = await self._kv()
        try:
            entry = await kv.get(schedule_id)
        except KeyNotFoundError:
            return None, None
        if entry.value is None:
            return None, entry.revision
        return _decode_stored(schedule_id, entry.value), entry.revision

    async def get(self, schedule_id: str) -> Schedule | None:
        schedule, _ = await self.get_with_revision(schedule_id)
        return schedule

    async def require(self, schedule_id: str) -> Schedule:
        schedule = await self.get(schedule_id)
        if schedule is None:
            raise NotFound(f"schedule {schedule_id!r} not found", schedule_id=schedule_id)
        return schedule

    async def list(self) -> list[Schedule]:
        """Every readable schedule, by id (a damaged entry is logged and left out)."""
        snapshot = await kv_snapshot(self._bus.js, subjects.KV_SCHEDULES)
        out: list[Schedule] = []
        for key in sorted(snapshot):
            try:
                out.append(decode_schedule(snapshot[key][0]))
            except ValueError as exc:
                log.warning("unreadable schedule in catalog", schedule_id=key, error=str(exc))
        return out

    async def create(self, schedule: Schedule) -> bool:
        """Store a new schedule: True when created, False when the identical schedule is
        already stored; 409 when the id holds a different one (use PUT to replace)."""
        kv = await self._kv()
        try:
            await kv.create(schedule.id, encode_schedule(schedule))
        except KeyWrongLastSequenceError:
            existing = await self.get(schedule.id)
            if existing is not None and encode_schedule(existing) == encode_schedule(schedule):
                return False
            raise Conflict(
                f"schedule {schedule.id!r} already exists; replace it with "
                f"PUT /api/schedules/{schedule.id} or delete it first",
                schedule_id=schedule.id,
            ) from None
        return True

    async def _cas(
        self, schedule_id: str, mutate: Callable[[Schedule], Schedule]
    ) -> tuple[Schedule, Schedule]:
        """``(old, new)`` after a compare-and-set of ``mutate(old)``; 404 when missing."""
        if not is_slug(schedule_id):
            raise NotFound(f"schedule {schedule_id!r} not found", schedule_id=schedule_id)
        applied: list[tuple[Schedule, Schedule]] = []

        def change(raw: bytes | None) -> bytes | None:
            if raw is None:
                raise NotFound(f"schedule {schedule_id!r} not found", schedule_id=schedule_id)
            current = _decode_stored(schedule_id, raw)
            new = mutate(current)
            applied.append((current, new))
            if encode_schedule(new) == encode_schedule(current):
                return raw  # no change: nothing to write
            return encode_schedule(new)

        try:
            await compare_and_set(await self._kv(), schedule_id, change)
        except CasConflict:
            raise Conflict(
                f"schedule {schedule_id!r} is being changed concurrently; retry"
            ) from None
        return applied[-1]

    async def replace(self, schedule: Schedule) -> tuple[Schedule, Schedule]:
        return await self._cas(schedule.id, lambda _old: schedule)

    async def set_enabled(self, schedule_id: str, enabled: bool) -> tuple[Schedule, Schedule]:
        def flip(old: Schedule) -> Schedule:
            doc = schedule_document(old)
            doc["enabled"] = enabled
            return parse_schedule(doc, strict=False)

        return await self._cas(schedule_id, flip)

    async def delete(self, schedule_id: str) -> Schedule:
        kv = await self._kv()
        current, revision = await self.get_with_revision(schedule_id)
        if current is None or revision is None:
            raise NotFound(f"schedule {schedule_id!r} not found", schedule_id=schedule_id)
        try:
            await kv.delete(schedule_id, last=revision)
        except APIError as exc:  # nats-py reports a refused delete(last=…) as a plain APIError
            if not is_wrong_last_sequence(exc):
                raise
            raise Conflict(f"schedule {schedule_id!r} changed meanwhile; retry") from None
        return current
