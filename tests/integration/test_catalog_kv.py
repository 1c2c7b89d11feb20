"""The KV catalogs against a real broker: job uploads and schedule edits as compare-and-sets
(kanade.bus.kvcas), the freeze record read through the one freeze model."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kanade.backend.catalog.freeze import clear_freeze, get_freeze, read_freeze, set_freeze
from kanade.backend.catalog.jobs import JobCatalog
from kanade.backend.catalog.schedules import ScheduleCatalog
from kanade.backend.errors import Conflict, Forbidden, NotFound
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.freeze import FREEZE_KEY, UNREADABLE_REASON, FleetFreeze
from kanade.core.models.job import JobManifest
from kanade.core.models.schedule import Schedule
from kanade.core.validation import parse_job, parse_schedule

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def job(version: str, script: str = "echo hi", *, gated: bool = False) -> JobManifest:
    return parse_job(
        {
            "id": "hello",
            "version": version,
            "execute": {"shell": "sh", "script": script, "timeout": "30s"},
            "require_approval": gated,
        }
    )


def sched(at: str = "10:00") -> Schedule:
    return parse_schedule(
        {"id": "s", "job_id": "hello", "target": {"all": True}, "when": {"calendar": {"at": at}}},
        strict=True,
        known_job_ids={"hello"},
    )


async def test_job_upload_is_new_unchanged_or_conflicting(bus: Bus) -> None:
    catalog = JobCatalog(bus)
    assert (await catalog.put(job("1"))).changed is True
    assert (await catalog.put(job("1"))).changed is False
    with pytest.raises(Conflict, match="already exists with different content"):
        await catalog.put(job("1", "echo other"))
    assert (await catalog.put(job("2", "echo other"))).changed is True
    stored = await catalog.require("hello")
    assert stored.version == "2"
    # a deleted job can be uploaded again (create over the delete marker)
    await (await bus.kv(subjects.KV_JOBS)).delete("hello")
    assert await catalog.get("hello") is None
    assert (await catalog.put(job("1"))).changed is True


async def test_only_an_admin_may_remove_a_jobs_approval_requirement(bus: Bus) -> None:
    catalog = JobCatalog(bus)
    assert (await catalog.put(job("1", gated=True), may_lower_approval=False)).changed
    # raising it, or keeping it, needs nothing special
    assert (await catalog.put(job("2", gated=True), may_lower_approval=False)).changed
    with pytest.raises(Forbidden, match="only an admin"):
        await catalog.put(job("3"), may_lower_approval=False)
    assert (await catalog.require("hello")).version == "2"
    stored = await catalog.put(job("3"), may_lower_approval=True)
    assert (stored.changed, stored.lowered_from) == (True, "2")
    assert (await catalog.put(job("4"), may_lower_approval=False)).lowered_from is None


async def test_schedule_edits_are_compare_and_sets(bus: Bus) -> None:
    catalog = ScheduleCatalog(bus)
    with pytest.raises(NotFound):
        await catalog.set_enabled("s", False)
    assert await catalog.create(sched()) is True
    kv = await bus.kv(subjects.KV_SCHEDULES)
    revision = (await kv.get("s")).revision
    old, new = await catalog.set_enabled("s", True)  # already enabled: nothing written
    assert old == new
    assert (await kv.get("s")).revision == revision
    old, new = await catalog.set_enabled("s", False)
    assert old.enabled is True and new.enabled is False
    assert (await catalog.require("s")).enabled is False
    old, new = await catalog.replace(sched("11:00"))
    assert old.enabled is False and new.enabled is True
    assert (await catalog.delete("s")).id == "s"
    assert await catalog.get("s") is None


async def test_freeze_record_round_trip_and_unreadable_reads_frozen(bus: Bus) -> None:
    assert await get_freeze(bus) is None
    assert await read_freeze(bus) is None
    record = FleetFreeze.model_validate(
        {"until": "2026-03-02T00:00:00Z", "by": "ops", "set_at": T0}
    )
    await set_freeze(bus, record)
    stored = await get_freeze(bus)
    assert stored is not None and stored.by == "ops"
    window = await read_freeze(bus)
    assert window is not None and window.covers(T0)
    assert await clear_freeze(bus) is True
    assert await clear_freeze(bus) is False
    await (await bus.kv(subjects.KV_FREEZE)).put(FREEZE_KEY, b"not json")
    damaged = await get_freeze(bus)
    assert damaged is not None and damaged.reason == UNREADABLE_REASON
    window = await read_freeze(bus)
    assert window is not None and window.from_ is None and window.until is None
