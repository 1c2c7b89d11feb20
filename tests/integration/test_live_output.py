"""Live output (SPEC §4.12, issue #18 item 1) with real processes: a ``kanade-backend``
process, a real secured broker, real ``kanade-agent`` processes and the ``kanade`` CLI.

* a script printing lines over ~1.2 s, then waiting for the test's word to end: ``kanade
  run`` shows them (plain on one pc, prefixed by pc on several) and ``kanade executions
  tail`` follows them, both before it ends; tail exits with the script's own exit code, and
  a result shown whole live is not printed twice;
* a chatty script (5 MB from ``yes``) on an agent capped at 8 KiB/s and 5 messages/s: what
  reaches the broker stays within the cap, the rest is counted as elided, the script is never
  slowed down and its result holds all 10 MB;
* forged chunks: another pc's subject is refused by the broker; on its own subject a payload
  naming another pc (or another exec) is dropped by the backend and counted; a watcher sees
  none of them, while a genuine chunk of the same identity reaches it.

One stack (broker, backend, three agents) for the whole module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from agent_harness import AgentFleet
from cli_runs import Streamed, kanade
from rollout_stack import Backend, Stack, alive, wait_for

from kanade.backend.inprocess import in_process_backend
from kanade.backend.settings import Settings
from kanade.bus.connection import connect
from kanade.bus.credentials import BusCredentials
from kanade.core import subjects
from kanade.core.models.wire import LiveChunk, LiveWatch, decode, encode
from kanade.security.authority import Authority
from polling import eventually
from secured import authority_dir

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

CAP_BYTES = 8192
CAP_MSGS = 5.0


def gated(tag: str, stop: Path) -> str:
    """Prints ``tag-1..3`` over ~1.2 s, then waits (at most 30 s) for ``stop`` to exist before
    its last line: so "seen before the script ended" does not depend on how fast a loaded
    machine starts the CLI."""
    return (
        f"for i in 1 2 3; do echo {tag}-$i; sleep 0.4; done; n=0; "
        f"while [ ! -e {stop} ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done; "
        f"echo {tag}-4"
    )


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, authority: Authority, module_store_url: str
) -> Iterator[tuple[Stack, Backend]]:
    base = tmp_path_factory.mktemp("live")
    stack = Stack(base, authority, module_store_url)
    fleet = AgentFleet(base / "agents", stack.broker.url, authority)
    try:
        b = stack.backend()
        fleet.add("pc-a")
        fleet.add("pc-b")
        fleet.add("pc-c", extra_args=["--live-output-bytes-per-s", str(CAP_BYTES),
                                      "--live-output-msgs-per-s", str(CAP_MSGS)])  # fmt: skip
        wait_for(lambda: alive(b, 3, "pc-"), timeout=40, what="3 agents alive")
        yield stack, b
    finally:
        fleet.close()
        stack.close()


class SseReader:
    """``GET path`` read as server-sent events in a thread: ``(event, data)`` as they come."""

    def __init__(self, url: str, path: str) -> None:
        self.url, self.path = url, path
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> SseReader:
        self._thread.start()
        return self

    def _read(self) -> None:
        name = "message"
        timeout = httpx.Timeout(10, read=None)
        # The stack may stop before a stream ends (a failed test): that ends the reading.
        with contextlib.suppress(httpx.HTTPError), httpx.Client(
            base_url=self.url, timeout=timeout
        ) as http, http.stream("GET", self.path) as resp:
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    self.events.append((name, json.loads(line[6:])))

    def text(self) -> str:
        return "".join(d.get("stdout", "") + d.get("stderr", "") for n, d in self.events
                       if n == "chunk")  # fmt: skip

    def names(self) -> list[str]:
        return [n for n, _ in self.events]


def saw(cli: Streamed, text: str) -> bool:
    cli.read()
    return text in cli.out


def _exec_done(b: Backend, exec_id: str) -> dict[str, Any] | None:
    ex = b.get(f"/api/executions/{exec_id}")
    return ex if all(r["state"] == "finished" for r in ex["results"]) else None


def test_run_shows_the_lines_as_the_script_writes_them(
    live: tuple[Stack, Backend], tmp_path: Path
) -> None:
    _, b = live
    # one pc: plain lines, seen before the script ends; shown whole, so not printed twice
    stop = tmp_path / "stop-one"
    cli = Streamed(b.url, "run", "--pc", "pc-a", "--", gated("one", stop))
    try:
        wait_for(lambda: saw(cli, "one-3"), timeout=30, what="one-3 live")
        assert "one-4" not in cli.out and cli.proc.poll() is None, cli.out
        stop.touch()
        code = cli.wait(timeout=30)
    finally:
        cli.close()
    assert code == 0, cli.out + cli.err
    assert cli.out.splitlines()[:4] == [f"one-{i}" for i in range(1, 5)], cli.out
    assert "pc-a  exit 0" in cli.out
    assert "| one-1" not in cli.out, cli.out  # the result's output was all shown live

    # several pcs: each line prefixed by its pc
    stop = tmp_path / "stop-two"
    cli = Streamed(b.url, "run", "--pc", "pc-a", "--pc", "pc-b", "--", gated("two", stop))
    try:
        wait_for(lambda: saw(cli, "pc-a | two-3") and saw(cli, "pc-b | two-3"), timeout=30,
                 what="both pcs live")  # fmt: skip
        assert "two-4" not in cli.out and cli.proc.poll() is None, cli.out
        stop.touch()
        code = cli.wait(timeout=30)
    finally:
        cli.close()
    assert code == 0, cli.out + cli.err
    for pc in ("pc-a", "pc-b"):
        assert [ln for ln in cli.out.splitlines() if ln.startswith(f"{pc} | ")] == [
            f"{pc} | two-{i}" for i in range(1, 5)
        ]
        assert f"{pc}  exit 0" in cli.out


def test_tail_follows_a_running_exec_and_exits_with_its_code(
    live: tuple[Stack, Backend], tmp_path: Path
) -> None:
    _, b = live
    stop = tmp_path / "stop"
    created = b.post_ok("/api/run", {"script": gated("tail", stop) + "; exit 3",
                                     "target": {"pcs": ["pc-b"]}})  # fmt: skip
    exec_id = created["exec_id"]
    sse = SseReader(b.url, f"/api/executions/{exec_id}/live").start()
    cli = Streamed(b.url, "executions", "tail", exec_id)
    try:
        wait_for(lambda: saw(cli, "tail-3"), timeout=30, what="tail-3 live")
        assert "tail-4" not in cli.out and _exec_done(b, exec_id) is None, cli.out
        stop.touch()
        code = cli.wait(timeout=30)
    finally:
        cli.close()
    assert code == 3, cli.out + cli.err
    assert cli.out.splitlines()[:4] == [f"tail-{i}" for i in range(1, 5)], cli.out
    assert "pc-b  exit 3" in cli.out
    # the dashboard's route: hello, the chunks in order, the end
    wait_for(lambda: "end" in sse.names(), timeout=15, what="the stream ended")
    assert sse.names()[0] == "hello"
    assert sse.text() == "".join(f"tail-{i}\n" for i in range(1, 5))
    chunks = [d for n, d in sse.events if n == "chunk"]
    assert [c["seq"] for c in chunks] == list(range(len(chunks))) and chunks[-1]["final"]
    assert sse.events[-1] == ("end", {"exec_id": exec_id, "status": "completed"})
    # once ended: its results at once, and the same exit code
    again = kanade(b.url, "executions", "tail", exec_id, timeout=30)
    assert again.returncode == 3 and "tail-4" in again.stdout, again.stdout + again.stderr


async def test_a_chatty_script_stays_within_the_cap_and_is_never_slowed(
    live: tuple[Stack, Backend],
) -> None:
    stack, b = live
    nc = await nats.connect(stack.broker.url, **stack.nats_options())
    got: list[tuple[float, LiveChunk]] = []

    async def on_chunk(msg: Any) -> None:
        got.append((time.monotonic(), decode(LiveChunk, msg.data)))

    try:
        script = "i=0; while [ $i -lt 10 ]; do yes | head -c 500000; sleep 0.1; i=$((i+1)); done"
        created = await asyncio.to_thread(
            b.post_ok, "/api/run", {"script": script, "target": {"pcs": ["pc-c"]}}
        )
        exec_id = created["exec_id"]
        await nc.subscribe(subjects.live_exec_subjects(exec_id), cb=on_chunk)
        watch = LiveWatch(exec_ids=[exec_id], for_s=60)
        await nc.publish(subjects.LIVE_WATCH_SUBJECT, encode(watch))
        ex = await eventually(lambda: _exec_done(b, exec_id), timeout=60, what="chatty done")
        await eventually(lambda: got and got[-1][1].final, timeout=30, what="the final chunk")
    finally:
        await nc.close()
    (row,) = ex["results"]
    assert row["exit_code"] == 0 and row["stdout_bytes"] == 5_000_000  # all of it, as always
    took = _seconds(row["finished_at"]) - _seconds(row["started_at"])
    assert took < 15, took  # 5 MB at the cap would take 20 minutes: the script never waited
    # Receipt times: a loaded machine delivers chunks in bursts, which shortens the measured
    # window; allow a second of jitter (5 MB through an uncapped sender would be 100x over).
    window = got[-1][0] - got[0][0] + 1.0
    text = sum(len(c.stdout) + len(c.stderr) for _, c in got)
    assert text <= CAP_BYTES * window + CAP_BYTES, (text, window)
    assert len(got) <= CAP_MSGS * window + CAP_MSGS, (len(got), window)
    elided = sum(c.stdout_elided + c.stderr_elided for _, c in got)
    assert text + elided == 5_000_000  # every byte sent or counted as left out
    assert [c.seq for _, c in got] == list(range(len(got)))


def _seconds(instant: str) -> float:
    from kanade.core.instants import parse_instant

    return parse_instant(instant).timestamp()


def _mismatches(b: Backend) -> float:
    with b.client() as http:
        text = http.get("/metrics").text
    found = re.search(r'^kanade_identity_mismatch_total\{kind="live"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_forged_chunks_are_refused_or_dropped(
    live: tuple[Stack, Backend], authority: Authority, tmp_path: Path
) -> None:
    stack, b = live
    created = await asyncio.to_thread(
        b.post_ok, "/api/run", {"script": "sleep 30", "target": {"pcs": ["pc-b"]}}
    )
    exec_id = created["exec_id"]
    sse = SseReader(b.url, f"/api/executions/{exec_id}/live").start()
    await eventually(lambda: "hello" in sse.names(), what="the stream open")
    before = await asyncio.to_thread(_mismatches, b)
    # A second identity of pc-x (a compromised machine): its own JWT, its own subjects only.
    authority.issue_agent("pc-x", tmp_path / "trust-x")
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    creds = BusCredentials.for_agent(tmp_path / "trust-x", "pc-x")
    nc = await connect(stack.broker.url, name="pc-x", retry_forever=False, error_cb=on_error,
                       credentials=creds)  # fmt: skip

    def chunk(pc: str, text: str, exec_: str = exec_id, final: bool = False) -> bytes:
        return encode(LiveChunk(exec_id=exec_, pc_id=pc, seq=0, stdout=text, final=final))

    try:
        # another pc's subject: the broker refuses the publish
        await nc.publish(subjects.live_subject("pc-b", exec_id), chunk("pc-b", "forged-1\n"))
        # its own subject, a payload naming pc-b, or another exec: the backend drops them
        await nc.publish(subjects.live_subject("pc-x", exec_id), chunk("pc-b", "forged-2\n"))
        await nc.publish(subjects.live_subject("pc-x", exec_id),
                         chunk("pc-x", "forged-3\n", exec_="other-exec"))  # fmt: skip
        # and what it may say: its own output, under its own name
        await nc.publish(subjects.live_subject("pc-x", exec_id),
                         chunk("pc-x", "genuine\n", final=True))  # fmt: skip
        await nc.flush()
        await eventually(lambda: "genuine" in sse.text(), what="the genuine chunk relayed")
        await eventually(lambda: any("permissions violation" in e.lower() for e in errors),
                         what="the broker refused the other pc's subject")  # fmt: skip
    finally:
        await nc.close()
        await asyncio.to_thread(b.post_ok, f"/api/executions/{exec_id}/kill")
    assert "forged" not in sse.text()
    assert [d["pc_id"] for n, d in sse.events if n == "chunk"] == ["pc-x"]
    after = await asyncio.to_thread(_mismatches, b)
    assert after - before == 2
    await eventually(lambda: "end" in sse.names(), timeout=20, what="the stream ended")


async def test_the_live_route_takes_the_token_in_the_query_string_and_nothing_else_does(
    nats_url: str, tmp_path: Path
) -> None:
    token = "static-token-0123456789"
    settings = Settings.from_db_arg(
        authority_dir=authority_dir(), nats_url=nats_url, db=str(tmp_path / "k.db"),
        auth_mode="jwt", jwt_secret="live-secret-" + "x" * 32, auth_token=token,
        signing_keys_dir=str(tmp_path / "keys"),
    )  # fmt: skip
    async with in_process_backend(settings) as b:
        r = await b.client.get("/api/executions/nosuch/live", params={"access_token": token})
        assert r.status_code == 404, r.text  # authenticated: the exec is unknown
        assert (await b.client.get("/api/executions/nosuch/live")).status_code == 401
        r = await b.client.get("/api/executions/nosuch", params={"access_token": token})
        assert r.status_code == 401  # only the streams EventSource opens take it
