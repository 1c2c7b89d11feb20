"""The central scheduler fires only schedules this backend signed (SPEC §8.2): a schedule
written into KV by anyone else never fires, and an unsigned delete of a real one changes
nothing. In-process backend, real nats-server; the attacker is a plain NATS client."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import nats
import pytest
from nats.aio.msg import Msg
from nats.js.kv import KV_DEL, KV_OP

from kanade.backend.inprocess import InProcessBackend, in_process_backend
from kanade.backend.settings import Settings
from kanade.bus import Bus
from kanade.bus.kv import kv_subject
from kanade.core import subjects
from kanade.core.freeze import FREEZE_KEY
from kanade.core.models.wire import Command, decode
from polling import eventually as shared_eventually
from secured import backend_credentials, session_authority

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

eventually = functools.partial(shared_eventually, timeout=20.0)
HELLO = {
    "id": "hello",
    "version": "1",
    "execute": {"shell": "sh", "script": "echo hello", "timeout": "30s"},
}


def instant(seconds: float) -> datetime:
    t = datetime.now(UTC) + timedelta(seconds=seconds)
    return t.replace(microsecond=0) + timedelta(seconds=1)


def cron_at(t: datetime) -> str:
    return f"{t.second} {t.minute} {t.hour} {t.day} {t.month} *"


@pytest.fixture
async def backend(nats_url: str, store_url: str) -> AsyncIterator[InProcessBackend]:
    settings = Settings.from_db_arg(
        nats_url=nats_url,
        db=store_url,
        authority_dir=session_authority().root,
        scheduler_lease_ttl_s=2.0,
    )
    async with in_process_backend(settings) as b:
        assert (await b.client.post("/api/jobs", json=HELLO)).status_code == 201

        async def leading() -> bool:
            return bool(b.app.state.scheduler.is_leader)

        await eventually(leading, what="scheduler leads")
        yield b


async def fired(bus: Bus) -> list[str]:
    seen: list[str] = []

    async def on(msg: Msg) -> None:
        seen.append(str(decode(Command, msg.data).schedule_id))

    await bus.nc.subscribe(subjects.COMMANDS_ALL, cb=on)
    return seen


async def schedule(backend: InProcessBackend, sid: str, t: datetime) -> None:
    body = {"id": sid, "job_id": "hello", "when": {"cron": cron_at(t)},
            "target": {"pcs": ["pc-1"]}, "tz": "utc"}  # fmt: skip
    r = await backend.client.post("/api/schedules", json=body)
    assert r.status_code == 201, r.text


async def test_an_unsigned_schedule_never_fires_and_an_unsigned_delete_changes_nothing(
    backend: InProcessBackend, bus: Bus, nats_url: str
) -> None:
    seen = await fired(bus)
    t = instant(6)
    await schedule(backend, "real", t)
    kv = await bus.kv(subjects.KV_SCHEDULES)
    stored = (await kv.get("real")).value
    assert stored is not None
    attacker = await nats.connect(nats_url, name="pytest-attacker", **_broker_identity())
    try:
        js = attacker.jetstream()
        forged = stored.replace(b'"real"', b'"forged"')
        await js.publish(kv_subject(subjects.KV_SCHEDULES, "forged"), forged)
        await js.publish(kv_subject(subjects.KV_SCHEDULES, "real"), b"",
                         headers={KV_OP: KV_DEL})  # fmt: skip
    finally:
        await attacker.close()

    async def real_fired() -> bool:
        return "real" in seen

    await eventually(real_fired, what="the signed schedule fires despite the unsigned delete")

    async def later() -> bool:
        return datetime.now(UTC) > t + timedelta(seconds=2)

    await eventually(later, what="past the instant")
    assert seen == ["real"]
    r = await backend.client.get("/api/executions", params={"limit": 100})
    assert [e["schedule_id"] for e in r.json()["items"]] == ["real"]


async def test_an_unsigned_delete_of_the_freeze_never_unfreezes(
    backend: InProcessBackend, nats_url: str
) -> None:
    r = await backend.client.put("/api/freeze", json={"reason": "change window"})
    assert r.status_code == 200 and r.json()["frozen"], r.text
    attacker = await nats.connect(nats_url, name="pytest-attacker", **_broker_identity())
    try:
        await attacker.jetstream().publish(
            kv_subject(subjects.KV_FREEZE, FREEZE_KEY), b"", headers={KV_OP: KV_DEL}
        )
    finally:
        await attacker.close()
    status = (await backend.client.get("/api/freeze")).json()
    assert status["frozen"] is True, status
    # The operator's own (signed) clear is obeyed.
    assert (await backend.client.delete("/api/freeze")).status_code == 200
    assert (await backend.client.get("/api/freeze")).json()["frozen"] is False


def _broker_identity() -> dict[str, object]:
    """The backend's NATS credential without its signing key: what an attacker who stole
    the broker credential holds (every broker in the suite is secured, SPEC §8.1)."""
    return backend_credentials(session_authority()).connect_options()
