"""Reusable pieces for end-to-end agent tests: real agent processes, a results collector
that reads KANADE_RESULTS through a JetStream consumer, and a command builder.

Nothing here mocks anything: agents are ``kanade-agent run`` subprocesses talking to a
real nats-server. Nothing sleeps as synchronisation: every wait is "poll a condition /
wait for an event, fail with a diagnostic at a deadline".

Process hygiene: every agent is started with ``KANADE_TEST_TAG`` in its environment,
which every script it runs inherits. :meth:`AgentFleet.close` stops the agents and
then SIGKILLs every process still carrying the tag, so an agent killed with -9 (whose
scripts live on in their own sessions) or a daemonised grandchild cannot outlive the
test. ``KANADE_TEST_PC`` is set too, so a script can say which agent ran it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

import polling
import trust
from kanade.bus.pull import PullConsumer
from kanade.core import subjects
from kanade.core.ids import new_id
from kanade.core.instants import system_clock
from kanade.core.models.wire import (
    Command,
    CommandAddress,
    EventStarted,
    Heartbeat,
    Result,
    decode,
    encode,
)
from kanade.core.signing import command_expiry
from kanade.security.authority import Authority
from secured import issue_agent, register_groups

AGENT_EXE = Path(sys.executable).parent / "kanade-agent"
TAG_ENV = "KANADE_TEST_TAG"
PC_ENV = "KANADE_TEST_PC"

DEFAULT_TIMEOUT = 20.0
POLL_S = 0.05


class HarnessError(polling.Fatal):
    """A wait ran past its deadline (an AssertionError so pytest reports it as a failure)."""


# The suites' one poll helper, with the harness's defaults: any error means "not yet"
# (e.g. the broker restarting), a HarnessError raised inside a check stops at once.
eventually = functools.partial(
    polling.eventually, timeout=DEFAULT_TIMEOUT, interval=POLL_S, tolerate_errors=True
)


def process_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie nobody reaped counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# --- agent processes -----------------------------------------------------------------------
class AgentProcess:
    """One ``kanade-agent run`` subprocess with its own data dir and a log file."""

    def __init__(
        self,
        pc_id: str,
        groups: Iterable[str],
        *,
        nats_url: str,
        root: Path,
        tag: str,
        authority: Authority,
        heartbeat_interval: float = 1.0,
        log_level: str = "debug",
        extra_args: Iterable[str] = (),
    ) -> None:
        self.pc_id = pc_id
        self.groups = sorted(groups)
        self.nats_url = nats_url
        self.data_dir = root / pc_id / "data"
        self.log_path = root / pc_id / "agent.log"
        self.config_path = root / pc_id / "agent.yaml"
        self.tag = tag
        self.authority = authority
        self.heartbeat_interval = heartbeat_interval
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.orphans: set[int] = set()

    def argv(self) -> list[str]:
        argv = [str(AGENT_EXE), "run", "--pc-id", self.pc_id, "--nats-url", self.nats_url,
                "--data-dir", str(self.data_dir),
                "--heartbeat-interval", str(self.heartbeat_interval),
                "--log-level", self.log_level,
                # An empty config file: nothing from the host's /etc leaks into a test.
                "--config", str(self.config_path)]
        for g in self.groups:
            argv += ["--group", g]
        return argv + self.extra_args

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, *, enrol: bool = True) -> AgentProcess:
        """Start the process; on the first start, ``enrol`` gives it its identity first."""
        if self.is_running():
            raise RuntimeError(f"agent {self.pc_id} is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("{}\n")
        if self.starts == 0 and enrol:  # its identity, and groups where the backend reads them
            issue_agent(self.authority, self.pc_id, self.data_dir)
            register_groups(self.nats_url, self.authority, self.pc_id, self.groups)
        env = {**os.environ, TAG_ENV: self.tag, PC_ENV: self.pc_id}
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- harness: start #{self.starts} of {self.pc_id} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, start_new_session=True,
            )
        return self

    async def wait_exit(self, timeout: float) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        give_up = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < give_up:
            await asyncio.sleep(POLL_S)
        return proc.poll()

    async def stop(self, timeout: float = 15.0) -> int | None:
        """Graceful stop (SIGTERM: the agent ends its scripts and flushes); SIGKILL if stuck."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return proc.poll() if proc else None
        proc.send_signal(signal.SIGTERM)
        code = await self.wait_exit(timeout)
        if code is None:
            await self.kill9()
            raise HarnessError(f"agent {self.pc_id} ignored SIGTERM for {timeout}s\n"
                               + self.log_tail())
        return code

    async def kill9(self) -> None:
        """SIGKILL, no clean-up: a crash. Its scripts live on (own sessions) and are
        remembered as orphans for :meth:`AgentFleet.close`."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(psutil.Error):
            self.orphans |= {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        proc.kill()
        if await self.wait_exit(10.0) is None:
            raise HarnessError(f"agent {self.pc_id} survived SIGKILL")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        return f"--- log tail of agent {self.pc_id} ({self.log_path}) ---\n{tail}"


class AgentFleet:
    """Starts agents under one directory and guarantees they and their scripts die."""

    def __init__(self, root: Path, nats_url: str, authority: Authority) -> None:
        self.root = root
        self.nats_url = nats_url
        self.authority = authority
        self.tag = f"kanade-test-{uuid.uuid4().hex}"
        self.agents: dict[str, AgentProcess] = {}

    def add(self, pc_id: str, groups: Iterable[str] = (), *, start: bool = True,
            **kwargs: Any) -> AgentProcess:
        agent = AgentProcess(pc_id, groups, nats_url=self.nats_url, root=self.root,
                             tag=self.tag, authority=self.authority, **kwargs)
        self.agents[pc_id] = agent
        if start:
            agent.start()
        return agent

    def __getitem__(self, pc_id: str) -> AgentProcess:
        return self.agents[pc_id]

    def diagnostics(self) -> str:
        return "\n".join(a.log_tail(25) for a in self.agents.values())

    def tagged_processes(self) -> list[psutil.Process]:
        """Every live process (agent, script, grandchild) started by this fleet."""
        found = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if proc.environ().get(TAG_ENV) == self.tag:
                    found.append(proc)
        return found

    async def aclose(self) -> None:
        for agent in self.agents.values():
            with contextlib.suppress(Exception):
                await agent.stop(timeout=10.0)
        self.close()

    def close(self) -> None:
        """Synchronous last resort (also safe after :meth:`aclose`)."""
        for agent in self.agents.values():
            if agent.is_running():
                assert agent.proc is not None
                agent.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    agent.proc.wait(timeout=10)
        pids = {p.pid for p in self.tagged_processes()}
        for agent in self.agents.values():
            pids |= agent.orphans
        pids.discard(os.getpid())
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # scripts lead their own group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        give_up = time.monotonic() + 10
        while time.monotonic() < give_up and not all(process_gone(p) for p in pids):
            time.sleep(POLL_S)  # sync teardown: poll until every process is gone


# --- commands ------------------------------------------------------------------------------
@dataclass
class Outgoing:
    """A command and the subject it is published on."""

    subject: str
    command: Command
    raw: bytes = b""

    def __post_init__(self) -> None:
        if not self.raw:
            self.raw = encode(self.command)

    @property
    def request_id(self) -> str:
        return self.command.request_id

    @property
    def job_id(self) -> str:
        return self.command.job_id


def build_command(
    job_id: str,
    script: str,
    *,
    scope: subjects.Scope = "pc",
    target: str | None = None,
    version: str = "1",
    timeout_s: float = 15.0,
    **fields: Any,
) -> Outgoing:
    """A command with fresh ids, ``issued_at`` = now and the backend's expiry, addressed
    like the backend does.

    Broadcasts (all / group) issued before an agent first started are ignored by that
    agent, so build them after the agents' data dirs exist.
    """
    address = CommandAddress(all=scope == "all",
                             groups=[target] if scope == "group" and target else [],
                             pcs=[target] if scope == "pc" and target else [])
    values: dict[str, Any] = {
        "request_id": new_id(), "exec_id": new_id(), "job_id": job_id, "version": version,
        "script": script, "timeout_s": timeout_s, "issued_at": system_clock(),
        "address": address,
    }
    values["expires_at"] = command_expiry(fields.get("issued_at", values["issued_at"]))
    values.update(fields)
    cmd = Command.model_validate(values)
    return Outgoing(subjects.command_subject(scope, target, job_id), cmd)


async def publish(
    js: JetStreamContext,
    out: Outgoing,
    *,
    signed: bool = True,
    headers: dict[str, str] | None = None,
) -> int:
    """Publish to the command stream, signed like the backend signs (``signed=False``:
    as an attacker without the key would); returns the stream sequence."""
    hdrs = trust.command_headers(out.subject, out.raw) if signed else {}
    hdrs.update(headers or {})
    ack = await js.publish(out.subject, out.raw, timeout=5.0, headers=hdrs or None)
    return ack.seq


async def ping(nc: Client, pc_id: str, *, timeout: float = 5.0) -> Heartbeat:
    msg = await nc.request(subjects.ping_subject(pc_id), b"", timeout=timeout)
    return decode(Heartbeat, msg.data)


async def send_kill(nc: Client, exec_id: str) -> None:
    await nc.publish(subjects.KILL_SUBJECT, f'{{"exec_id": "{exec_id}"}}'.encode())
    await nc.flush()


async def wait_agent_ready(nc: Client, agent: AgentProcess, *,
                           timeout: float = DEFAULT_TIMEOUT) -> Heartbeat:
    """Until the agent answers pings AND its durable command consumer exists."""
    js = nc.jetstream()

    async def ready() -> Heartbeat | None:
        if not agent.is_running():
            raise HarnessError(f"agent {agent.pc_id} exited with {agent.proc.poll()}\n"  # type: ignore[union-attr]
                               + agent.log_tail())
        try:
            hb = await ping(nc, agent.pc_id, timeout=1.0)
        except (NoRespondersError, NatsTimeoutError):
            return None
        await js.consumer_info(subjects.STREAM_COMMANDS,
                               subjects.agent_consumer_name(agent.pc_id))
        return hb

    hb: Heartbeat = await eventually(ready, timeout=timeout, what=f"agent {agent.pc_id} ready",
                                     diagnostics=agent.log_tail)
    return hb


# --- results ---------------------------------------------------------------------------------
@dataclass
class Collected:
    results: list[Result] = field(default_factory=list)
    started: list[EventStarted] = field(default_factory=list)
    undecodable: list[tuple[str, bytes]] = field(default_factory=list)


class ResultsCollector:
    """Reads everything in KANADE_RESULTS (results and EventStarted) through a durable
    pull consumer, from the first message, and keeps every stream message once
    (redeliveries after a broker restart are recognised by stream sequence, so a
    result counted twice here really is in the stream twice)."""

    def __init__(self, nc: Client, *, idle_heartbeat: float = 1.0) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.name = f"test-collector-{uuid.uuid4().hex[:12]}"
        self.idle_heartbeat = idle_heartbeat
        self.data = Collected()
        self._seen: set[int] = set()
        self._last_seq = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consumer: PullConsumer | None = None
        self._closing = False

    async def _ensure_consumer(self) -> None:
        cfg = ConsumerConfig(
            name=self.name, durable_name=self.name, ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=(DeliverPolicy.BY_START_SEQUENCE if self._last_seq
                            else DeliverPolicy.ALL),
            opt_start_seq=self._last_seq + 1 if self._last_seq else None,
            ack_wait=30.0, inactive_threshold=3600.0,
        )
        await self.js.add_consumer(subjects.STREAM_RESULTS, cfg)

    async def start(self) -> ResultsCollector:
        await self._ensure_consumer()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        # Ends on the flag too, not only on cancellation: Python 3.11's wait_for can swallow
        # a cancel that races a completion, and a loop that lives on after that hung a whole
        # xdist worker in teardown (the event loop's shutdown waits for every task).
        while not self._closing:
            self._consumer = PullConsumer(self.nc, subjects.STREAM_RESULTS, self.name,
                                          window=256, idle_heartbeat=self.idle_heartbeat)
            watchdog = asyncio.create_task(self._watch_consumer())
            try:
                async for msg in self._consumer.messages():
                    await self._on_msg(msg)
            finally:
                watchdog.cancel()
            if self._closing:
                return
            # The watchdog closed the iterator: the consumer vanished; recreate it.
            with contextlib.suppress(Exception):
                await self._ensure_consumer()

    async def _watch_consumer(self) -> None:
        """If the broker lost our consumer (crash before it was persisted), start over
        from the last stream sequence we saw."""
        while True:
            await asyncio.sleep(1.0)
            if not self.nc.is_connected:
                continue
            try:
                await self.js.consumer_info(subjects.STREAM_RESULTS, self.name)
            except NotFoundError:
                assert self._consumer is not None
                await self._consumer.close()
                return
            except Exception:
                continue

    async def _on_msg(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        with contextlib.suppress(Exception):
            await msg.ack()
        if seq in self._seen:
            return
        self._seen.add(seq)
        self._last_seq = max(self._last_seq, seq)
        try:
            if msg.subject.startswith(f"{subjects.PREFIX}.result."):
                self.data.results.append(decode(Result, msg.data))
            elif msg.subject.startswith(f"{subjects.PREFIX}.started."):
                self.data.started.append(decode(EventStarted, msg.data))
            else:
                self.data.undecodable.append((msg.subject, msg.data))
        except ValueError:
            self.data.undecodable.append((msg.subject, msg.data))
        self._changed.set()

    async def close(self) -> None:
        self._closing = True
        if self._consumer is not None:
            await self._consumer.close()  # ends the iteration even if a cancel is lost
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=10.0)
        if self._consumer is not None:
            await self._consumer.close()
        if self.nc.is_connected:
            with contextlib.suppress(Exception):
                await self.js.delete_consumer(subjects.STREAM_RESULTS, self.name)

    # --- queries ---------------------------------------------------------------------------
    @property
    def results(self) -> list[Result]:
        return list(self.data.results)

    @property
    def started(self) -> list[EventStarted]:
        return list(self.data.started)

    def results_for(self, *, pc: str | None = None, job: str | None = None,
                    request_id: str | None = None) -> list[Result]:
        return [r for r in self.data.results
                if (pc is None or r.pc_id == pc) and (job is None or r.job_id == job)
                and (request_id is None or r.request_id == request_id)]

    def count_by_pc_job(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for r in self.data.results:
            counts[(r.pc_id, r.job_id)] = counts.get((r.pc_id, r.job_id), 0) + 1
        return counts

    def summary(self) -> str:
        lines = [f"collected {len(self.data.results)} result(s), "
                 f"{len(self.data.started)} started event(s):"]
        lines += [f"  result pc={r.pc_id} job={r.job_id} v={r.version} exit={r.exit_code} "
                  f"skipped={r.skipped} note={r.note!r} req={r.request_id}"
                  for r in self.data.results]
        return "\n".join(lines)

    async def wait(
        self,
        predicate: Callable[[Result], bool],
        n: int = 1,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        what: str = "results",
        diagnostics: Callable[[], str] | None = None,
        kind: str = "result",
    ) -> list[Any]:
        """Wait until at least ``n`` collected items (results, or started events with
        ``kind="started"``) satisfy ``predicate``; return them."""
        give_up = time.monotonic() + timeout
        while True:
            pool: list[Any] = self.data.results if kind == "result" else self.data.started
            hits = [r for r in pool if predicate(r)]
            if len(hits) >= n:
                return hits
            remaining = give_up - time.monotonic()
            if remaining <= 0:
                extra = "\n" + diagnostics() if diagnostics else ""
                raise HarnessError(f"waiting for {n} {what}: got {len(hits)} within "
                                   f"{timeout:.1f}s\n{self.summary()}{extra}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))

    async def wait_for_request(self, out: Outgoing | str, pc: str, **kw: Any) -> Result:
        rid = out if isinstance(out, str) else out.request_id
        kw.setdefault("what", f"result of {rid} on {pc}")
        hits = await self.wait(lambda r: r.request_id == rid and r.pc_id == pc, **kw)
        return hits[0]

    async def wait_started(self, out: Outgoing, pc: str, **kw: Any) -> EventStarted:
        kw.setdefault("what", f"EventStarted of {out.request_id} on {pc}")
        hits = await self.wait(lambda e: e.request_id == out.request_id and e.pc_id == pc,
                               kind="started", **kw)
        return hits[0]


async def barrier(js: JetStreamContext, nc: Client, collector: ResultsCollector,
                  agent: AgentProcess, *, timeout: float = DEFAULT_TIMEOUT) -> Result:
    """Prove the agent processed everything published to it so far.

    A pc-addressed command published now is behind every earlier command in the
    stream, and an agent admits its commands in stream order; once its result is
    back, every earlier command was admitted or ignored. A ping round trip then
    shows the agent is still healthy.
    """
    out = build_command(f"barrier-{uuid.uuid4().hex[:8]}", "true", target=agent.pc_id)
    await publish(js, out)
    result = await collector.wait_for_request(out, agent.pc_id, timeout=timeout,
                                              diagnostics=agent.log_tail)
    await ping(nc, agent.pc_id)
    return result


def is_barrier(r: Result) -> bool:
    return r.job_id.startswith("barrier-")
