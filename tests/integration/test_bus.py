"""kanade.bus against a real nats-server: broker lifecycle, connect/reconnect, topology.

No mocks and no sleeps used as synchronisation: tests wait on events, or poll a
condition until a deadline.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from nats.js.api import KeyValueConfig, StorageType, StreamConfig

from kanade.bus import (
    Backoff,
    BrokerError,
    Bus,
    BusConnectError,
    EmbeddedBroker,
    connect,
    ensure_topology,
    find_nats_server,
    required_file_store,
)
from kanade.bus.credentials import BusCredentials
from kanade.bus.kv import (
    KvChange,
    is_delete,
    is_delete_operation,
    kv_key,
    kv_prefix,
    kv_stream,
    kv_subject,
    subscribe_changes,
)
from kanade.bus.topology import KV_SPECS, OBJECT_SPECS, STREAM_SPECS
from kanade.core import subjects
from kanade.core.retention import EXECUTIONS_MAX_AGE
from kanade.core.signing import SIGNATURE_HEADER
from polling import eventually as shared_eventually
from secured import backend_credentials, session_authority

DEADLINE = 15.0


eventually = functools.partial(
    shared_eventually, timeout=DEADLINE, interval=0.05, tolerate_errors=True
)



def _creds() -> BusCredentials:
    return backend_credentials(session_authority())

def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def pid_gone(pid: int) -> bool:
    """True once the process is reaped: a zombie still answers signal 0."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def stream_msgs(bus: Bus, stream: str) -> int:
    return (await bus.js.stream_info(stream)).state.messages


# --- broker ------------------------------------------------------------------------------
def test_find_nats_server_is_the_wheel_binary() -> None:
    path = find_nats_server()
    assert path.is_file()
    assert path.name.startswith("nats-server")


# The three tests below are about the broker process itself (start, stop, restart, config),
# not about clients: no client ever connects, so their brokers may stay anonymous.
def test_broker_starts_ready_and_stops(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path / "store")
    try:
        broker.start()
        assert broker.is_running()
        assert broker.url == f"nats://127.0.0.1:{broker.port}"
        # Ready means: client port accepting and JetStream healthy.
        assert port_open("127.0.0.1", broker.port)
        with urllib.request.urlopen(f"{broker.monitor_url}/healthz", timeout=2) as resp:
            assert resp.status == 200
        conf = broker.config_file.read_text()
        assert f'listen: "127.0.0.1:{broker.port}"' in conf
        assert "max_payload: 8MB" in conf
        assert "max_file_store: 4GB" in conf
        pid = broker.pid
        assert pid is not None
    finally:
        broker.stop()
    assert not broker.is_running()
    assert not port_open("127.0.0.1", broker.port)
    assert pid_gone(pid)  # reaped, not a zombie


def test_broker_context_manager_and_port_kept_across_restart(tmp_path: Path) -> None:
    with EmbeddedBroker(tmp_path / "store") as broker:
        port, http_port, first_pid = broker.port, broker.http_port, broker.pid
        broker.restart()
        assert broker.is_running()
        assert (broker.port, broker.http_port) == (port, http_port)
        assert broker.pid != first_pid
    assert not broker.is_running()


def test_broker_start_failure_shows_log_tail(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path / "store", extra_config="this is { not valid")
    with pytest.raises(BrokerError) as info:
        broker.start(timeout=10)
    assert "log tail" in str(info.value)
    assert not broker.is_running()


async def test_restart_keeps_jetstream_data(nats_server: EmbeddedBroker, bus: Bus) -> None:
    ack = await bus.publish_js(subjects.audit_subject("test"), b"before-restart")
    await asyncio.to_thread(nats_server.restart)

    async def stored() -> bool:
        msg = await bus.js.get_msg(subjects.STREAM_AUDIT, seq=ack.seq)
        return msg.data == b"before-restart"

    await eventually(stored, what="message survives a graceful restart")


async def test_kill9_then_restart(nats_server: EmbeddedBroker, bus: Bus) -> None:
    ack = await bus.publish_js(subjects.audit_subject("test"), b"before-kill")
    pid = nats_server.pid
    nats_server.kill()
    assert not nats_server.is_running()
    assert pid is not None and pid_gone(pid)
    await asyncio.to_thread(nats_server.start)

    async def usable_and_stored() -> bool:
        await bus.publish_js(subjects.audit_subject("test"), b"after-kill", timeout=1)
        msg = await bus.js.get_msg(subjects.STREAM_AUDIT, seq=ack.seq)
        return msg.data == b"before-kill"

    await eventually(usable_and_stored, what="broker usable after kill -9, data kept")


# --- topology ------------------------------------------------------------------------------
async def all_stream_names(bus: Bus) -> set[str]:
    return {si.config.name for si in await bus.js.streams_info() if si.config.name}


async def test_topology_creates_everything(bus: Bus) -> None:
    names = await all_stream_names(bus)
    assert {subjects.STREAM_COMMANDS, subjects.STREAM_RESULTS} <= names
    assert {subjects.STREAM_EXECS, subjects.STREAM_AUDIT} <= names
    for bucket in subjects.KV_BUCKETS:
        kv = await bus.kv(bucket)
        await kv.put("probe", b"1")
        assert (await kv.get("probe")).value == b"1"
        assert await bus.kv(bucket) is kv  # cached
    for store_name in subjects.OBJECT_STORES:
        store = await bus.obj(store_name)
        await store.put("probe", b"x" * 300_000)  # several chunks
        assert (await store.get("probe")).data == b"x" * 300_000
    # Every stream is bounded.
    for si in await bus.js.streams_info():
        assert si.config.max_bytes is not None and si.config.max_bytes > 0, si.config.name
    # Every name in the wire contract is covered by the limits table.
    assert {s.name for s in STREAM_SPECS} == {
        subjects.STREAM_COMMANDS,
        subjects.STREAM_RESULTS,
        subjects.STREAM_EXECS,
        subjects.STREAM_AUDIT,
        subjects.STREAM_DECISIONS,
    }
    assert {k.bucket for k in KV_SPECS} == set(subjects.KV_BUCKETS)
    assert {o.bucket for o in OBJECT_SPECS} == set(subjects.OBJECT_STORES)
    # The reservations fit in the embedded broker's default 4GB file store.
    assert required_file_store() < 4 * 1024**3


async def test_topology_limits(bus: Bus) -> None:
    cmd = (await bus.js.stream_info(subjects.STREAM_COMMANDS)).config
    assert cmd.max_msgs_per_subject == 1
    assert cmd.storage == StorageType.FILE
    assert cmd.max_age == 7 * 86400
    assert cmd.duplicate_window == 120
    res = (await bus.js.stream_info(subjects.STREAM_RESULTS)).config
    assert set(res.subjects or []) == {subjects.RESULTS_ALL, subjects.STARTED_ALL}
    assert res.duplicate_window == 600
    kv = (await bus.js.stream_info(f"KV_{subjects.KV_DISPATCH}")).config
    assert kv.max_msgs_per_subject == 1
    assert kv.max_age and kv.max_age > 0
    # Operator state must outlive any age limit: the newest document of each key, kept.
    state = (await bus.js.stream_info(f"KV_{subjects.KV_STATE}")).config
    assert state.max_msgs_per_subject == 1 and not state.max_age
    assert state.max_msg_size == 8 * 1024 * 1024
    # Agents' decisions: the newest of each pc and schedule (each carries its totals).
    dec = (await bus.js.stream_info(subjects.STREAM_DECISIONS)).config
    assert set(dec.subjects or []) == {subjects.DECISIONS_ALL}
    assert dec.max_msgs_per_subject == 100


async def test_topology_idempotent_sequential_and_concurrent(nats_url: str) -> None:
    a = await Bus.connect(nats_url, credentials=_creds(), name="proc-a", deadline=10)
    b = await Bus.connect(nats_url, credentials=_creds(), name="proc-b", deadline=10)
    try:
        # Two "processes" racing on an empty broker, then again on a complete one.
        await asyncio.wait_for(asyncio.gather(ensure_topology(a.js), ensure_topology(b.js)), 30)
        before = {si.config.name: si.config for si in await a.js.streams_info()}
        await asyncio.wait_for(ensure_topology(a.js), 30)
        await asyncio.wait_for(asyncio.gather(ensure_topology(a.js), ensure_topology(b.js)), 30)
        after = {si.config.name: si.config for si in await a.js.streams_info()}
        assert before == after
        assert len(after) == 5 + len(subjects.KV_BUCKETS) + len(subjects.OBJECT_STORES)
    finally:
        await a.close()
        await b.close()


async def test_topology_survives_drift(nats_url: str, caplog: pytest.LogCaptureFixture) -> None:
    bus = await Bus.connect(nats_url, credentials=_creds(), name="drift", deadline=10)
    try:
        # Immutable drift: memory instead of file storage, other limits wrong too.
        await bus.js.add_stream(
            StreamConfig(
                name=subjects.STREAM_EXECS,
                subjects=[subjects.EXECS_ALL],
                storage=StorageType.MEMORY,
                max_age=60,
                max_bytes=1024 * 1024,
            )
        )
        # Mutable drift: smaller limits, file storage.
        await bus.js.add_stream(
            StreamConfig(name=subjects.STREAM_AUDIT, subjects=[subjects.AUDIT_ALL], max_bytes=4096)
        )
        await bus.js.create_key_value(KeyValueConfig(bucket=subjects.KV_JOBS, history=5))

        with caplog.at_level(logging.WARNING, logger="kanade.bus.topology"):
            await asyncio.wait_for(ensure_topology(bus.js), 30)
            await asyncio.wait_for(ensure_topology(bus.js), 30)  # and again: still no crash

        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(subjects.STREAM_EXECS in w and "storage" in w for w in warnings), warnings
        execs = (await bus.js.stream_info(subjects.STREAM_EXECS)).config
        assert execs.storage == StorageType.MEMORY  # kept as is...
        # ...but the mutable fields converged (the age: as long as the DB keeps ended execs)
        assert execs.max_age == EXECUTIONS_MAX_AGE.total_seconds()
        ack = await bus.publish_js(subjects.exec_subject("created", "e1"), b"{}")
        assert ack.stream == subjects.STREAM_EXECS

        audit = (await bus.js.stream_info(subjects.STREAM_AUDIT)).config
        assert audit.max_bytes == 256 * 1024 * 1024
        assert (await bus.js.stream_info(f"KV_{subjects.KV_JOBS}")).config.max_msgs_per_subject == 1
        kv = await bus.kv(subjects.KV_JOBS)
        await kv.put("j", b"1")
    finally:
        await bus.close()


async def test_topology_scale(nats_url: str) -> None:
    bus = await Bus.connect(nats_url, credentials=_creds(), name="scaled", deadline=10)
    try:
        await ensure_topology(bus.js, scale=0.5)
        cfg = (await bus.js.stream_info(subjects.STREAM_RESULTS)).config
        assert cfg.max_bytes == 512 * 1024 * 1024
        await ensure_topology(bus.js, scale=1.0)  # growing is an update, not a crash
        cfg = (await bus.js.stream_info(subjects.STREAM_RESULTS)).config
        assert cfg.max_bytes == 1024 * 1024 * 1024
    finally:
        await bus.close()


# --- command plane rule -------------------------------------------------------------------
async def test_commands_keep_only_newest_per_subject(bus: Bus) -> None:
    pc1 = subjects.command_subject("pc", "pc1", "job1")
    pc2 = subjects.command_subject("pc", "pc2", "job1")
    other_job = subjects.command_subject("pc", "pc1", "job2")
    await bus.publish_js(pc1, b"v1")
    await bus.publish_js(pc1, b"v2")
    await bus.publish_js(pc2, b"v1")
    await bus.publish_js(other_job, b"v1")

    assert await stream_msgs(bus, subjects.STREAM_COMMANDS) == 3
    assert (await bus.js.get_last_msg(subjects.STREAM_COMMANDS, pc1)).data == b"v2"
    assert (await bus.js.get_last_msg(subjects.STREAM_COMMANDS, pc2)).data == b"v1"
    assert (await bus.js.get_last_msg(subjects.STREAM_COMMANDS, other_job)).data == b"v1"


async def test_msg_id_dedup(bus: Bus) -> None:
    subject = subjects.result_subject("pc1")
    first = await bus.publish_js(subject, b"result", msg_id="result-1")
    second = await bus.publish_js(subject, b"result", msg_id="result-1")
    third = await bus.publish_js(subject, b"result", msg_id="result-2")
    assert not first.duplicate
    assert second.duplicate and second.seq == first.seq
    assert not third.duplicate
    assert await stream_msgs(bus, subjects.STREAM_RESULTS) == 2


async def test_large_payload_fits(bus: Bus) -> None:
    # max_payload is 8MB; results accept a full payload (minus headers room).
    payload = b"x" * (7 * 1024 * 1024)
    ack = await bus.publish_js(subjects.result_subject("pc1"), payload, timeout=10)
    msg = await bus.js.get_msg(subjects.STREAM_RESULTS, seq=ack.seq)
    assert msg.data is not None and len(msg.data) == len(payload)


# --- KV details (bus.kv) ------------------------------------------------------------------
async def test_kv_subject_put_is_a_kv_put(bus: Bus) -> None:
    kv = await bus.kv(subjects.KV_DISPATCH)
    ack = await bus.publish_js(kv_subject(subjects.KV_DISPATCH, "tick.s1"), b"v1")
    entry = await kv.get("tick.s1")
    assert entry.value == b"v1" and entry.revision == ack.seq
    assert ack.stream == kv_stream(subjects.KV_DISPATCH)


async def test_kv_changes_decode_puts_deletes_and_purges(bus: Bus) -> None:
    bucket = subjects.KV_GROUPS
    kv = await bus.kv(bucket)
    seen: list[KvChange] = []

    async def on_change(change: KvChange) -> None:
        seen.append(change)

    sub = await subscribe_changes(bus.nc, bucket, on_change)
    try:
        await kv.put("a.b", b"1")
        await kv.delete("a.b")
        await kv.put("c", b"2")
        await kv.purge("c")

        async def all_seen() -> bool:
            return len(seen) == 4

        await eventually(all_seen)
    finally:
        await sub.unsubscribe()
    assert [(c.key, c.value, c.operation) for c in seen] == [
        ("a.b", b"1", "PUT"),
        ("a.b", None, "DEL"),
        ("c", b"2", "PUT"),
        ("c", None, "PURGE"),
    ]
    assert [c.deleted for c in seen] == [False, True, False, True]
    # The fixture's bus signs like a backend: every change carries its signature header.
    assert all(c.headers and SIGNATURE_HEADER in c.headers for c in seen)


def test_kv_key_of_a_subject() -> None:
    assert kv_prefix("b") == "$KV.b."
    assert kv_key("b", "$KV.b.tick.s1") == "tick.s1"
    with pytest.raises(ValueError):
        kv_key("b", "$KV.other.tick")
    assert not is_delete(None) and not is_delete({}) and is_delete({"KV-Operation": "PURGE"})
    assert is_delete_operation("DEL") and not is_delete_operation(None)


# --- connection ---------------------------------------------------------------------------
def test_backoff_is_jittered_and_capped() -> None:
    backoff = Backoff(base=0.1, cap=5.0)
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0.0 <= d <= 5.0 for d in delays)
    assert max(delays[:3]) <= 0.4  # starts small
    assert len({round(d, 6) for d in delays}) > 150  # jittered, not lockstep
    backoff.reset()
    assert backoff.next_delay() <= 0.1


async def test_connect_waits_for_a_broker_started_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # ports chosen, not started
    broker = EmbeddedBroker(tmp_path / "late", security=session_authority().broker_security())
    states: list[str] = []
    caplog.set_level(logging.DEBUG, logger="kanade.bus.connection")
    task = asyncio.create_task(
        connect(
            broker.url,
            name="early-bird",
            on_state=states.append,
            reconnect_time_wait=0.2,
            credentials=_creds(),
        )
    )
    try:

        async def failed_twice() -> bool:
            return sum("failed" in r.getMessage() for r in caplog.records) >= 2

        await eventually(failed_twice, what="connect() retries while no broker runs")
        assert not task.done()

        await asyncio.to_thread(broker.start)
        nc = await asyncio.wait_for(task, DEADLINE)
        try:
            assert nc.is_connected
            assert states == ["connected"]
            await nc.publish("kanade.test", b"hello")
            await nc.flush(timeout=5)
        finally:
            await nc.close()
        assert states[-1] == "closed"
    finally:
        task.cancel()
        await asyncio.to_thread(broker.stop)


async def test_connect_gives_up_at_deadline(tmp_path: Path) -> None:
    url = EmbeddedBroker(tmp_path / "never").url  # nothing listens there
    started = time.monotonic()
    with pytest.raises(BusConnectError):
        await connect(url, name="impatient", deadline=0.5, credentials=_creds())
    assert time.monotonic() - started < 5
    with pytest.raises(BusConnectError):
        await connect(url, name="one-shot", retry_forever=False, credentials=_creds())


async def test_reconnect_after_broker_restart(nats_server: EmbeddedBroker) -> None:
    states: list[str] = []
    reconnected = asyncio.Event()

    def on_state(state: str) -> None:
        states.append(state)
        if state == "reconnected":
            reconnected.set()

    bus = await Bus.connect(
        nats_server.url,
        credentials=_creds(),
        name="survivor", deadline=10, on_state=on_state, reconnect_time_wait=0.2
    )
    try:
        await ensure_topology(bus.js)
        await bus.publish_js(subjects.audit_subject("a"), b"1")
        await asyncio.to_thread(nats_server.restart)
        await asyncio.wait_for(reconnected.wait(), DEADLINE)
        assert states[:3] == ["connected", "disconnected", "reconnected"]

        # The JetStream API may need a moment after a restart: poll, do not sleep.
        async def publish_ok() -> bool:
            ack = await bus.publish_js(subjects.audit_subject("a"), b"2", timeout=1)
            return ack.stream == subjects.STREAM_AUDIT

        await eventually(publish_ok, what="publish works after reconnect")
        assert await stream_msgs(bus, subjects.STREAM_AUDIT) >= 2
    finally:
        await bus.close()
    assert states[-1] == "closed"
