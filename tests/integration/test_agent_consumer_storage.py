"""The agent's command consumer keeps its state in broker memory (docs/performance.md).

That takes a file rewrite per agent per command off the broker's disk, and it is
only safe because the ledger, not the consumer, decides what was already admitted.
These tests pin both halves: the consumer is memory-backed (also when an older agent
left a file-backed one), and when a broker restart drops it the agent re-creates it,
receives new commands, and the replayed old ones never run a second time.
"""

from __future__ import annotations

from pathlib import Path

from agent_harness import (
    AgentFleet,
    ResultsCollector,
    barrier,
    build_command,
    eventually,
    is_barrier,
    publish,
    wait_agent_ready,
)
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from kanade.bus import Bus, EmbeddedBroker
from kanade.core import subjects


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def _consumer_info(bus: Bus, pc_id: str):  # type: ignore[no-untyped-def]
    try:
        return await bus.js.consumer_info(
            subjects.STREAM_COMMANDS, subjects.agent_consumer_name(pc_id)
        )
    except NotFoundError:
        return None


async def test_consumer_is_memory_backed_and_rebuilt_after_a_broker_restart(
    tmp_path: Path,
    nats_server: EmbeddedBroker,
    bus: Bus,
    fleet: AgentFleet,
    collector: ResultsCollector,
) -> None:
    agent = fleet.add("pc-1", ["web"])
    await wait_agent_ready(bus.nc, agent)
    info = await _consumer_info(bus, "pc-1")
    assert info is not None and info.config.mem_storage is True, info

    mark = tmp_path / "ran"
    first = build_command("before", 'echo x >> "$MARK"', scope="group", target="web",
                          env={"MARK": str(mark)})
    await publish(bus.js, first)
    await collector.wait_for_request(first, "pc-1", diagnostics=agent.log_tail)

    # A graceful restart keeps the streams (file storage) and drops the memory consumer.
    nats_server.restart()

    async def rebuilt() -> bool:
        again = await _consumer_info(bus, "pc-1")
        return again is not None and again.config.mem_storage is True

    await eventually(rebuilt, timeout=30, what="consumer re-created after the restart",
                     diagnostics=agent.log_tail)
    after = build_command("after", 'echo y >> "$MARK"', target="pc-1",
                          env={"MARK": str(tmp_path / "after")})
    await publish(bus.js, after)
    r = await collector.wait_for_request(after, "pc-1", timeout=30, diagnostics=agent.log_tail)
    assert r.exit_code == 0
    await barrier(bus.js, bus.nc, collector, agent, timeout=30)

    # The re-created consumer started from the beginning of the stream, so "before"
    # was delivered again — and the ledger acked it without running it.
    info = await _consumer_info(bus, "pc-1")
    assert info is not None and info.delivered.consumer_seq >= 3, info
    assert _lines(mark) == ["x"]
    assert len(collector.results_for(request_id=first.request_id)) == 1, collector.summary()


async def test_file_backed_consumer_of_an_older_agent_is_replaced_without_reruns(
    tmp_path: Path, bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    mark = tmp_path / "ran"
    done = build_command("once", 'echo x >> "$MARK"', target="pc-1", env={"MARK": str(mark)})
    await publish(bus.js, done)
    await collector.wait_for_request(done, "pc-1", diagnostics=agent.log_tail)
    await agent.stop()

    # What an agent from before this change left behind: the same consumer on disk.
    name = subjects.agent_consumer_name("pc-1")
    await bus.js.delete_consumer(subjects.STREAM_COMMANDS, name)
    await bus.js.add_consumer(
        subjects.STREAM_COMMANDS,
        ConsumerConfig(
            name=name,
            durable_name=name,
            filter_subjects=subjects.agent_command_filters("pc-1", []),
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
        ),
    )
    old = await _consumer_info(bus, "pc-1")
    assert old is not None and not old.config.mem_storage
    queued = build_command("queued", "echo queued", target="pc-1")
    await publish(bus.js, queued)

    agent.start()
    await wait_agent_ready(bus.nc, agent)
    r = await collector.wait_for_request(queued, "pc-1", diagnostics=agent.log_tail)
    assert r.stdout == "queued\n"
    await barrier(bus.js, bus.nc, collector, agent)
    info = await _consumer_info(bus, "pc-1")
    assert info is not None and info.config.mem_storage is True, info
    assert _lines(mark) == ["x"]
    work = [x for x in collector.results if not is_barrier(x)]
    assert sorted(x.job_id for x in work) == ["once", "queued"], collector.summary()


async def test_consumer_deleted_under_a_running_agent_is_re_created(
    bus: Bus, fleet: AgentFleet, collector: ResultsCollector
) -> None:
    agent = fleet.add("pc-1")
    await wait_agent_ready(bus.nc, agent)
    await bus.js.delete_consumer(
        subjects.STREAM_COMMANDS, subjects.agent_consumer_name("pc-1")
    )
    # The open pull is answered "consumer deleted" (or the next one "no responders"):
    # the agent re-creates its consumer without waiting for a reconnect.
    await eventually(lambda: _consumer_info(bus, "pc-1"), timeout=20,
                     what="consumer re-created", diagnostics=agent.log_tail)
    out = build_command("later", "echo later", target="pc-1")
    await publish(bus.js, out)
    r = await collector.wait_for_request(out, "pc-1", diagnostics=agent.log_tail)
    assert r.stdout == "later\n"
