"""KV documents the agent obeys must carry the backend's signature (SPEC §8.2): an agent's
fleet-state mirror against a real broker ignores unsigned or badly signed writes and
deletes, live and on re-sync, keeping the previous value; a signing-key set is learned
only when a trusted key signed it.

The ``bus`` fixture signs like a backend; the attacker is a plain NATS client publishing
on the KV subjects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE

import polling
import trust
from kanade.agent.fleet.state import FleetState
from kanade.agent.trust import Trust, read_keyring
from kanade.bus import Bus
from kanade.bus.kv import kv_subject
from kanade.core import subjects
from kanade.core.instants import system_clock
from kanade.core.signing import KeyPair, Keyring, Signer, TrustedKey
from secured import backend_credentials, session_authority


@pytest.fixture
async def attacker(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url, name="pytest-attacker", **_broker_identity())
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def fleet(bus: Bus, nats_url: str, tmp_path: Path) -> AsyncIterator[FleetState]:
    """An agent's fleet state with the session keyring pinned, synced and following."""
    state = FleetState(
        pc_id="pc-1", groups=[], trust=Trust(trust.write_keyring(tmp_path / "keyring.json"))
    )
    client = await nats.connect(nats_url, name="pytest-agent", **_broker_identity())
    try:
        await state.resync(client)
        state.nc = client  # type: ignore[attr-defined]
        yield state
    finally:
        await client.close()


async def barrier(bus: Bus, fleet: FleetState, bucket: str) -> None:
    """A signed write made after the attack has reached the mirror: so has the attack."""
    kv = await bus.kv(bucket)
    marker = f"barrier-{polling.__name__}-{id(fleet)}"
    await kv.put(marker, b"{}")
    mirror = next(m for m in fleet.mirrors if m.bucket == bucket)
    await polling.eventually(lambda: marker in mirror.values, "the barrier write")
    await kv.delete(marker)
    await polling.eventually(lambda: marker not in mirror.values, "the barrier delete")


async def test_an_unsigned_job_rewrite_is_ignored_live_and_on_resync(
    bus: Bus, fleet: FleetState, attacker: Client
) -> None:
    jobs = await bus.kv(subjects.KV_JOBS)
    await jobs.put("hello", b'{"script":"echo hi"}')
    await polling.eventually(lambda: fleet.jobs.values.get("hello"), "the signed job")
    await attacker.jetstream().publish(kv_subject(subjects.KV_JOBS, "hello"), b'{"script":"id"}')
    await barrier(bus, fleet, subjects.KV_JOBS)
    assert fleet.jobs.values["hello"] == b'{"script":"echo hi"}'
    assert fleet.trust is not None and fleet.trust.rejected_docs == 1
    # The unsigned value is now the key's last message: a re-sync keeps the old one too.
    await fleet.resync(fleet.nc)  # type: ignore[attr-defined]
    assert fleet.jobs.values["hello"] == b'{"script":"echo hi"}'


async def test_a_job_signed_by_another_key_is_ignored(
    bus: Bus, fleet: FleetState, attacker: Client
) -> None:
    value = b'{"script":"id"}'
    headers = Signer(KeyPair.generate()).kv_headers(subjects.KV_JOBS, "evil", "PUT", value)
    await attacker.jetstream().publish(kv_subject(subjects.KV_JOBS, "evil"), value, headers=headers)
    await barrier(bus, fleet, subjects.KV_JOBS)
    assert "evil" not in fleet.jobs.values


async def test_an_unsigned_delete_or_purge_never_unrevokes(
    bus: Bus, fleet: FleetState, attacker: Client
) -> None:
    revocations = await bus.kv(subjects.KV_REVOCATIONS)
    await revocations.put("bad-job", b'{"by":"admin"}')
    await polling.eventually(lambda: "bad-job" in fleet.revocations.values, "the revocation")
    subject = kv_subject(subjects.KV_REVOCATIONS, "bad-job")
    js = attacker.jetstream()
    await js.publish(subject, b"", headers={KV_OP: KV_DEL})
    await js.publish(subject, b"", headers={KV_OP: KV_PURGE, "Nats-Rollup": "sub"})
    await barrier(bus, fleet, subjects.KV_REVOCATIONS)
    assert "bad-job" in fleet.revocations.values
    await fleet.resync(fleet.nc)  # type: ignore[attr-defined]
    assert "bad-job" in fleet.revocations.values
    assert "bad-job" in fleet.snapshot(0.0).decode()
    # The backend's own (signed) unrevoke is obeyed.
    await revocations.delete("bad-job")
    await polling.eventually(lambda: "bad-job" not in fleet.revocations.values, "the unrevoke")


async def test_a_signing_key_set_signed_by_an_unknown_key_is_rejected(
    bus: Bus, fleet: FleetState, attacker: Client, tmp_path: Path
) -> None:
    assert fleet.trust is not None
    before = read_keyring(fleet.trust.path)
    rogue = KeyPair.generate()
    doc = Keyring.of([TrustedKey(rogue.kid, rogue.public_key)], system_clock()).encode()
    headers = Signer(rogue).kv_headers(subjects.KV_TRUST, subjects.SIGNING_KEYS_KEY, "PUT", doc)
    await attacker.jetstream().publish(
        kv_subject(subjects.KV_TRUST, subjects.SIGNING_KEYS_KEY), doc, headers=headers
    )
    await polling.eventually(lambda: fleet.trust and fleet.trust.rejected_docs >= 1, "rejected")
    assert rogue.kid not in fleet.trust.keyring.keys
    assert read_keyring(fleet.trust.path) == before


async def test_a_signing_key_set_signed_by_a_trusted_key_is_pinned(
    bus: Bus, fleet: FleetState
) -> None:
    assert fleet.trust is not None
    new = KeyPair.generate()
    announced = Keyring.of(
        [*trust.keyring().keys.values(), TrustedKey(new.kid, new.public_key)], system_clock()
    )
    kv = await bus.kv(subjects.KV_TRUST)
    await kv.put(subjects.SIGNING_KEYS_KEY, announced.encode())
    await polling.eventually(lambda: new.kid in fleet.trust.keyring.keys, "the new key")  # type: ignore[union-attr]
    assert new.kid in read_keyring(fleet.trust.path).keys
    assert fleet.trust.path.stat().st_mode & 0o777 == 0o600


async def test_a_resync_of_many_keys_reads_headers_through_a_consumer_and_checks_each(
    bus: Bus, fleet: FleetState, attacker: Client
) -> None:
    """Past the direct-read threshold a re-sync reads through one consumer: it still sees
    each key's headers (delete markers included) and still refuses what is unsigned."""
    pins = await bus.kv(subjects.KV_PINS)
    for i in range(50):
        await pins.put(f"job-{i}", b"1")
    await pins.delete("job-0")
    await attacker.jetstream().publish(kv_subject(subjects.KV_PINS, "job-1"), b"666")
    await attacker.jetstream().publish(
        kv_subject(subjects.KV_PINS, "job-2"), b"", headers={KV_OP: KV_DEL}
    )
    await fleet.resync(fleet.nc)  # type: ignore[attr-defined]
    assert "job-0" not in fleet.pins.values
    assert fleet.pins.values["job-1"] == b"1" and fleet.pins.values["job-2"] == b"1"
    assert len(fleet.pins.values) == 49
    fresh = FleetState(
        pc_id="pc-2",
        groups=[],
        trust=Trust(trust.write_keyring(fleet.trust.path)),  # type: ignore[union-attr]
    )
    await fresh.resync(fleet.nc)  # type: ignore[attr-defined]
    # Nothing to keep for the keys whose last write is unsigned: they are simply unknown.
    assert set(fresh.pins.values) == {f"job-{i}" for i in range(3, 50)}


def _broker_identity() -> dict[str, object]:
    """The backend's NATS credential without its signing key: what an attacker who stole
    the broker credential holds (every broker in the suite is secured, SPEC §8.1)."""
    return backend_credentials(session_authority()).connect_options()
