"""Command-consumer provisioning (SPEC §8.1) against a secured broker: the backend creates
``agent-<pc>`` for the pc named by the request *subject*, with its KV groups; an agent's
own identity may ask, but never create a consumer itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import nats.errors
import pytest

from kanade.backend.workers.provisioning import ConsumerProvisioner
from kanade.bus.connection import Bus, connect
from kanade.bus.credentials import BusCredentials
from kanade.bus.topology import ensure_topology
from kanade.core import subjects
from kanade.core.models.wire import ConsumerReply, decode
from kanade.security.authority import Authority
from secured import issue_agent, put_groups

TIMEOUT = 10.0


@pytest.fixture
async def provisioner(bus: Bus) -> AsyncIterator[ConsumerProvisioner]:
    p = ConsumerProvisioner(max_concurrent=4)
    await p.subscribe(bus)
    try:
        yield p
    finally:
        await p.close()


async def _ask(bus: Bus, subject: str, payload: bytes = b"") -> ConsumerReply:
    msg = await bus.nc.request(subject, payload, timeout=TIMEOUT)
    return decode(ConsumerReply, msg.data)


async def _filters(bus: Bus, pc_id: str) -> list[str]:
    info = await bus.js.consumer_info(subjects.STREAM_COMMANDS, subjects.agent_consumer_name(pc_id))
    config = info.config
    assert config.mem_storage is True and config.durable_name == f"agent-{pc_id}"
    return sorted(config.filter_subjects or [])


async def test_provisions_the_subjects_pc_with_its_kv_groups_and_ignores_the_payload(
    bus: Bus, provisioner: ConsumerProvisioner
) -> None:
    await put_groups(bus, "pc-x", ["web", "db"])
    claim = json.dumps({"pc_id": "pc-evil", "groups": ["admins"]}).encode()
    reply = await _ask(bus, subjects.consumer_request_subject("pc-x"), claim)
    expected = sorted(subjects.agent_command_filters("pc-x", ["web", "db"]))
    assert reply.ok and sorted(reply.filters) == expected
    assert await _filters(bus, "pc-x") == expected
    with pytest.raises(nats.js.errors.NotFoundError):
        await bus.js.consumer_info(subjects.STREAM_COMMANDS, "agent-pc-evil")
    # A membership change is applied on the next request (update in place).
    await put_groups(bus, "pc-x", ["web"])
    assert (await _ask(bus, subjects.consumer_request_subject("pc-x"))).ok
    assert await _filters(bus, "pc-x") == sorted(subjects.agent_command_filters("pc-x", ["web"]))


async def test_bad_requests_are_answered_with_an_error_and_it_keeps_serving(
    bus: Bus, provisioner: ConsumerProvisioner
) -> None:
    for subject in ("kanade.agent.-dash.consumer", "kanade.agent.bad$pc.consumer"):
        reply = await _ask(bus, subject, b"\xff not json")
        assert not reply.ok and reply.error is not None and subject in reply.error
    # Group names that would widen a filter subject are never used.
    kv = await bus.kv(subjects.KV_GROUPS)
    await kv.put("pc-y", json.dumps(["ok-group", "*", ">", "a.b", 7]).encode())
    reply = await _ask(bus, subjects.consumer_request_subject("pc-y"), b"garbage")
    assert reply.ok
    assert await _filters(bus, "pc-y") == sorted(
        subjects.agent_command_filters("pc-y", ["ok-group"])
    )
    # Still serving, many at once (bounded concurrency, each answered).
    replies = await asyncio.gather(
        *(_ask(bus, subjects.consumer_request_subject(f"many-{i}")) for i in range(30))
    )
    assert all(r.ok for r in replies)
    assert provisioner.refused == 2


async def test_an_agent_asks_for_its_consumer_but_cannot_create_one(
    nats_url: str, bus: Bus, provisioner: ConsumerProvisioner, authority: Authority,
    tmp_path: Path,
) -> None:  # fmt: skip
    await ensure_topology(bus.js)
    issue_agent(authority, "pc-a", tmp_path / "pc-a")
    creds = BusCredentials.for_agent(tmp_path / "pc-a" / "trust", "pc-a")
    agent = await connect(nats_url, name="pc-a", retry_forever=False, credentials=creds)
    try:
        msg = await agent.request(subjects.consumer_request_subject("pc-a"), b"", timeout=TIMEOUT)
        assert decode(ConsumerReply, msg.data).ok
        # Its own consumer, for another pc, or one reading every command: all refused by
        # the broker (no permission on the create API: the request times out unanswered).
        js = agent.jetstream(timeout=2)
        for name, filters in (
            ("agent-pc-a", ["kanade.cmd.>"]),
            ("agent-pc-b", subjects.agent_command_filters("pc-b", [])),
            ("sneaky", ["kanade.cmd.>"]),
        ):
            with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
                await js.add_consumer(
                    subjects.STREAM_COMMANDS, durable_name=name, filter_subjects=filters
                )
        # Asking on another pc's subject is refused by the broker too (no reply ever).
        with pytest.raises((TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await agent.request(subjects.consumer_request_subject("pc-b"), b"", timeout=2)
        assert await _filters(bus, "pc-a") == sorted(subjects.agent_command_filters("pc-a", []))
        with pytest.raises(nats.js.errors.NotFoundError):
            await bus.js.consumer_info(subjects.STREAM_COMMANDS, "agent-pc-b")
    finally:
        await agent.close()


async def test_joining_a_group_recreates_the_consumer_so_its_stored_commands_come(
    bus: Bus, provisioner: ConsumerProvisioner
) -> None:
    """Updated in place, a consumer would start the new group at its current position
    and never deliver the group's commands stored before (the agent could not run one
    issued after it joined); re-created, it delivers them and the agent decides each by
    its join instant (SPEC §3.2). Leaving a group is an update in place: no replay."""
    name = subjects.agent_consumer_name("pc-j")
    assert (await _ask(bus, subjects.consumer_request_subject("pc-j"))).ok
    await bus.js.publish(subjects.command_subject("pc", "pc-j", "a"), b"{}")
    await bus.js.publish(subjects.command_subject("group", "ops", "b"), b"{}")
    first = await bus.js.consumer_info(subjects.STREAM_COMMANDS, name)
    assert first.num_pending == 1  # its own pc command; not the ops one
    await put_groups(bus, "pc-j", ["ops"])
    assert (await _ask(bus, subjects.consumer_request_subject("pc-j"))).ok
    joined = await bus.js.consumer_info(subjects.STREAM_COMMANDS, name)
    assert joined.created != first.created and joined.num_pending == 2
    # Asked again with nothing changed (the agent's retry): the same consumer.
    assert (await _ask(bus, subjects.consumer_request_subject("pc-j"))).ok
    again = await bus.js.consumer_info(subjects.STREAM_COMMANDS, name)
    assert again.created == joined.created
    await (await bus.kv(subjects.KV_GROUPS)).delete("pc-j")
    assert (await _ask(bus, subjects.consumer_request_subject("pc-j"))).ok
    left = await bus.js.consumer_info(subjects.STREAM_COMMANDS, name)
    assert left.created == joined.created
    assert sorted(left.config.filter_subjects or []) == sorted(
        subjects.agent_command_filters("pc-j", [])
    )
