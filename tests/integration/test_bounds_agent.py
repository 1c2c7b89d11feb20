"""Issue #15 item 6, the agent side: a real ``kanade-agent`` process, signed commands with
absurd values straight onto the command stream (as a backend without bounds, an older one,
or anyone holding its signing key would send them).

Before: ``jitter_s: 1e308`` held a concurrency slot forever (four of them made the agent
unusable); NaN, infinite, zero and negative timeouts meant no timeout; 50 retries ran. Now
each is answered at once with one skipped result (exit 122) whose note names the field, the
script never runs, and an ordinary command right after them runs as usual.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psutil
from agent_harness import (
    AgentFleet,
    Outgoing,
    ResultsCollector,
    build_command,
    publish,
    wait_agent_ready,
)

from kanade.bus.connection import Bus

PC = "bnd-1"

ABSURD: dict[str, tuple[str, dict[str, Any]]] = {
    # name: (the field the note must name, the fields sent)
    "jitter-a": ("jitter_s", {"jitter_s": 1e308}),
    "jitter-b": ("jitter_s", {"jitter_s": 1e308}),
    "jitter-c": ("jitter_s", {"jitter_s": 1e308}),
    "jitter-d": ("jitter_s", {"jitter_s": 1e308}),
    "timeout-nan": ("timeout_s", {"timeout_s": float("nan")}),
    "timeout-inf": ("timeout_s", {"timeout_s": float("inf")}),
    "timeout-zero": ("timeout_s", {"timeout_s": 0}),
    "timeout-negative": ("timeout_s", {"timeout_s": -5}),
    "retries-50": ("retry.max", {"retry": {"max": 50, "backoff_s": 0}}),
    "output-cap": ("max_output_bytes", {"max_output_bytes": 2**40}),
    "deadline-9999": ("deadline_at", {"deadline_at": "9999-12-31T00:00:00Z"}),
}


def absurd(job_id: str, marker: Path, fields: dict[str, Any]) -> Outgoing:
    """A signed-looking command whose body has ``fields`` (NaN/Infinity as Python's json
    writes them); its script would leave ``marker`` behind."""
    out = build_command(job_id, f"echo ran >> {marker}", target=PC)
    body = {**json.loads(out.raw), **fields}
    return Outgoing(out.subject, out.command, json.dumps(body).encode())


async def test_absurd_values_are_answered_with_a_skipped_result_naming_the_field(
    bus: Bus, fleet: AgentFleet, collector: ResultsCollector, tmp_path: Path
) -> None:
    agent = fleet.add(PC)
    await wait_agent_ready(bus.nc, agent)
    rss0 = psutil.Process(agent.pid).memory_info().rss
    marker = tmp_path / "ran"
    sent: dict[str, tuple[Outgoing, float]] = {}
    for name, (_, fields) in ABSURD.items():
        out = absurd(f"bounds-{name}", marker, fields)
        sent[name] = (out, time.monotonic())
        await publish(bus.js, out)

    answered_ms: dict[str, int] = {}
    for name, (field, _) in ABSURD.items():
        out, t0 = sent[name]
        result = await collector.wait_for_request(out, PC, timeout=15, diagnostics=agent.log_tail)
        answered_ms[name] = round((time.monotonic() - t0) * 1000)
        assert result.skipped and result.exit_code == 122, (name, result)
        assert result.note is not None and result.note.startswith("invalid command: " + field), (
            name,
            result.note,
        )
        assert result.attempts == 0

    # Every slot is free: an ordinary command runs at once.
    ordinary = build_command("bounds-ordinary", "echo fine", target=PC)
    await publish(bus.js, ordinary)
    ok = await collector.wait_for_request(ordinary, PC, timeout=15, diagnostics=agent.log_tail)
    assert ok.exit_code == 0 and ok.stdout == "fine\n"
    assert not marker.exists(), "a command with an absurd value ran its script"
    # Exactly one result per command: nothing reported twice, nothing left running.
    for name in ABSURD:
        out, _ = sent[name]
        assert len(collector.results_for(request_id=out.request_id)) == 1, name
    assert not [e for e in collector.started if e.job_id.startswith("bounds-") and
                e.job_id != "bounds-ordinary"]
    growth_mb = (psutil.Process(agent.pid).memory_info().rss - rss0) / 2**20
    print(json.dumps({"bounds": "agent commands", "answered_in_ms": answered_ms,
                      "agent_rss_growth_mb": round(growth_mb, 1)}))
