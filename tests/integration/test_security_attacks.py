"""Issue #13's attacks, repeated against a real ``kanade up`` with every identity (SPEC §8).

One stack for the module (broker + backend + two agents, as an operator runs it). The
attacker is, in turn: anonymous; agent A's and agent B's own credentials (a stolen
machine); the operator-tools credential; and the backend's NATS credential *without* the
signing key. Each attack asserts the refusal the matrix in docs/security.md promises and
that its effect did not happen (no marker file, no row, no changed state).

Refusals at the broker show up as "permissions violation" errors on the attacker's
connection, so those checks are quick; "nothing ran" is checked after a barrier — a
legitimate command that every agent finished — published after the attack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.errors
import psutil
import pytest
from nats.aio.client import Client

from kanade.bus.connection import MSG_ID_HEADER, BusConnectError, connect
from kanade.bus.credentials import BusCredentials
from kanade.core import subjects as s
from kanade.core.models.wire import Command, CommandAddress, Heartbeat, Result, encode
from kanade.security.authority import Authority
from polling import eventually
from stack import UpStack, start_up, stop_up

AGENT_A, AGENT_B = "local-1", "local-2"
CONNECTED = ("agent-a", "agent-b", "operator", "backend")
NOT_TRUSTED = ("agent-a", "agent-b", "operator")  # refused by the broker itself
VIOLATION_WAIT_S = 5.0
NKEY_SEED = re.compile(r"\bS[OAU][A-Z2-7]{50,}")
RESULT_WAIT_S = 30.0


# SQLite only: `kanade up` keeps its store in its data dir (it takes no --db); its
# PostgreSQL topology, `kanade up --cluster`, is test_up_cluster.py's.
@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    base = tmp_path_factory.mktemp("attacks")
    stack = start_up(base / "data", base / "up.log", agents=2)
    try:
        yield stack
    finally:
        stop_up(stack)


def _credentials(up: UpStack, identity: str) -> BusCredentials:
    security = up.data_dir / "security"
    if identity == "backend":
        return BusCredentials(security / "backend.creds", security / "ca.pem")
    if identity == "operator":
        return BusCredentials(
            security / "operator.creds", security / "ca.pem", Authority.operator_inbox_prefix()
        )
    pc = AGENT_A if identity == "agent-a" else AGENT_B
    return BusCredentials.for_agent(up.data_dir / "agents" / pc / "trust", pc)


def _tls_url(up: UpStack) -> str:
    return up.nats_url.replace("nats://", "tls://")


@dataclass
class Attacker:
    """One identity's connection, recording what the broker refused."""

    identity: str
    nc: Client
    violations: list[str] = field(default_factory=list)

    async def refused_publish(self, subject: str, data: bytes = b"{}", **kw: Any) -> None:
        before = len(self.violations)
        await self.nc.publish(subject, data, **kw)
        await self.nc.flush()
        await eventually(
            lambda: any(subject.lower() in v for v in self.violations[before:]),
            f"{self.identity}: publish to {subject} refused",
            timeout=VIOLATION_WAIT_S,
        )

    async def refused_subscribe(self, subject: str) -> None:
        before = len(self.violations)
        await self.nc.subscribe(subject)
        await self.nc.flush()
        await eventually(
            lambda: any(subject.lower() in v for v in self.violations[before:]),
            f"{self.identity}: subscribe to {subject} refused",
            timeout=VIOLATION_WAIT_S,
        )


@pytest.fixture(params=CONNECTED)
async def attacker(request: pytest.FixtureRequest, up: UpStack) -> AsyncIterator[Attacker]:
    identity = str(request.param)
    violations: list[str] = []

    async def on_error(exc: Exception) -> None:
        violations.append(str(exc).lower())

    nc = await connect(
        _tls_url(up),
        name=f"attacker:{identity}",
        retry_forever=False,
        credentials=_credentials(up, identity),
        error_cb=on_error,
    )
    try:
        yield Attacker(identity, nc, violations)
    finally:
        await nc.close()


def _api(up: UpStack, method: str, path: str, **kw: Any) -> Any:
    with httpx.Client(base_url=up.url, timeout=30) as http:
        resp = http.request(method, f"/api{path}", **kw)
        resp.raise_for_status()
        return resp.json()


def _exec_hello(up: UpStack) -> httpx.Response:
    """An operator's exec of the catalog job ``hello`` on every agent (raw answer)."""
    with httpx.Client(base_url=up.url, timeout=30) as http:
        return http.post("/api/exec/hello", json={"target": {"all": True}})


def _results(up: UpStack, exec_id: str) -> list[dict[str, Any]]:
    return list(_api(up, "GET", "/results", params={"exec_id": exec_id})["items"])


def _run(up: UpStack, script: str, **target: Any) -> dict[str, Any]:
    created: dict[str, Any] = _api(
        up, "POST", "/run", json={"script": script, "target": target or {"all": True}}
    )
    return created


async def _finished(up: UpStack, exec_id: str, count: int) -> list[dict[str, Any]]:
    # A started event makes an in-flight row first: wait for finished ones.
    rows: list[dict[str, Any]] = await eventually(
        lambda: (r := [x for x in _results(up, exec_id) if x.get("state") != "in_flight"])
        and len(r) >= count
        and r,
        f"{count} result(s) of {exec_id}",
        timeout=RESULT_WAIT_S,
        tolerate_errors=True,
    )
    return rows


def _barrier(up: UpStack) -> None:
    """A legitimate command every agent finished: anything published before it was seen."""
    done = up.kanade("run", "--all", "--json", "--", "true")
    assert done.returncode == 0, done.stderr


def _forged_command(marker: Path, *, address: CommandAddress, exec_id: str) -> Command:
    now = datetime.now(UTC)
    return Command(
        request_id=uuid.uuid4().hex,
        exec_id=exec_id,
        job_id="evil",
        version="1",
        shell="sh",
        script=f"id > {marker}",
        timeout_s=30,
        issued_at=now,
        address=address,
    )


# --- anonymous -----------------------------------------------------------------------------
async def test_anonymous_client_is_refused(up: UpStack) -> None:
    ca = up.data_dir / "security" / "ca.pem"
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            _tls_url(up),
            tls=ssl.create_default_context(cafile=str(ca)),
            allow_reconnect=False,
            connect_timeout=3,
        )
    with pytest.raises((nats.errors.Error, OSError, TimeoutError)):
        # plain text is not even spoken to: the broker requires TLS
        await nats.connect(up.nats_url, allow_reconnect=False, connect_timeout=3)


async def test_the_broker_config_has_no_anonymous_access(up: UpStack) -> None:
    conf = (up.data_dir / "nats" / "nats-server.conf").read_text()
    assert "operator:" in conf and "resolver" in conf and "tls {" in conf
    assert "no_auth_user" not in conf and "authorization" not in conf


# --- commands ------------------------------------------------------------------------------
@pytest.mark.parametrize("scope", ["all", "group", "pc"])
async def test_forged_command_never_runs(
    attacker: Attacker, up: UpStack, tmp_path: Path, scope: str
) -> None:
    marker = tmp_path / f"pwned-{attacker.identity}-{scope}"
    exec_id = f"evil-{uuid.uuid4().hex[:12]}"
    target = {"all": None, "group": "local", "pc": AGENT_A}[scope]
    address = CommandAddress(
        all=scope == "all",
        groups=[target] if scope == "group" and target else [],
        pcs=[AGENT_A] if scope == "pc" else [],
    )
    command = _forged_command(marker, address=address, exec_id=exec_id)
    subject = s.command_subject(scope, target, "evil")  # type: ignore[arg-type]
    data = command.model_dump_json(by_alias=True).encode()
    if attacker.identity in NOT_TRUSTED:
        await attacker.refused_publish(subject, data)
    else:
        # The backend's NATS credential may publish, but not sign: agents refuse (123)
        # and say so in a result the backend records.
        js = attacker.nc.jetstream()
        await js.publish(subject, data, headers={MSG_ID_HEADER: uuid.uuid4().hex})
        # filed under an exec id of their own: a forgery never counts in a real exec
        refused = await eventually(
            lambda: [r for r in _results(up, f"{exec_id}:refused") if r["exit_code"] == 123],
            "a 123 refusal result for the forged command",
            timeout=RESULT_WAIT_S,
            tolerate_errors=True,
        )
        assert all(r["skipped"] for r in refused)
        assert "sign" in refused[0]["stderr"].lower()
    _barrier(up)
    assert not marker.exists(), f"{attacker.identity} made an agent run a forged command"


async def test_resent_and_altered_signed_commands_are_refused(up: UpStack, tmp_path: Path) -> None:
    """Holding the backend's NATS credential: take a real signed command from the stream
    and publish it again, with a new request id, and dated in the future."""
    ran = tmp_path / "ran"
    created = _run(up, f"echo once >> {ran}", pcs=[AGENT_A])
    exec_id = created["exec_id"]
    await _finished(up, exec_id, 1)
    nc = await connect(
        _tls_url(up), name="replayer", retry_forever=False, credentials=_credentials(up, "backend")
    )
    try:
        js = nc.jetstream()
        original = await js.get_last_msg(
            s.STREAM_COMMANDS, s.command_subject("pc", AGENT_A, created["job_id"])
        )
        assert original.data is not None and original.headers is not None
        body = json.loads(original.data)
        signature = {k: v for k, v in original.headers.items() if k.startswith("Kanade")}
        assert signature, "commands carry the backend's signature"

        async def send(data: bytes, dedup: str) -> None:
            await js.publish(original.subject, data, headers={**signature, MSG_ID_HEADER: dedup})

        # 1. the very same bytes again (new dedup id): refused as a replay
        await send(original.data, uuid.uuid4().hex)
        # 2. a new request id (to run it again): the signature no longer matches
        await send(json.dumps({**body, "request_id": uuid.uuid4().hex}).encode(), "alt-1")
        # 3. dated three days ahead, to run on an agent started later
        future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
        await send(
            json.dumps({**body, "request_id": uuid.uuid4().hex, "issued_at": future}).encode(),
            "alt-2",
        )
        replays = await _finished(up, f"{exec_id}:replay", 1)
        assert "replay" in replays[0]["stderr"] and replays[0]["exit_code"] == 123
        refused = await _finished(up, f"{exec_id}:refused", 2)
        assert {r["exit_code"] for r in refused} == {123}
    finally:
        await nc.close()
    _barrier(up)
    assert ran.read_text() == "once\n"


# --- the KV catalog and fleet state -------------------------------------------------------------
@pytest.mark.parametrize(
    "bucket,key",
    [
        (s.KV_JOBS, "hello"),
        (s.KV_REVOCATIONS, "hello"),
        (s.KV_FREEZE, "freeze"),
        (s.KV_CONFIG, "fleet"),
        (s.KV_GROUPS, AGENT_A),
        (s.KV_PINS, "hello"),
        (s.KV_SCHEDULES, "evil"),
        (s.KV_TRUST, "signing_keys"),
    ],
)
async def test_untrusted_identities_cannot_write_fleet_state(
    attacker: Attacker, bucket: str, key: str
) -> None:
    if attacker.identity not in NOT_TRUSTED:
        pytest.skip("the backend's credential may write KV; agents ignore unsigned documents")
    await attacker.refused_publish(f"$KV.{bucket}.{key}", b'{"evil": true}')
    await attacker.refused_publish(f"$KV.{bucket}.{key}", b"", headers={"KV-Operation": "DEL"})


async def test_unsigned_job_rewrite_never_runs(up: UpStack, tmp_path: Path) -> None:
    """The backend's NATS credential rewrites `hello` in the catalog; an operator's normal
    exec of hello must not run the attacker's script (nor sign it under their name)."""
    marker = tmp_path / "pwned-job"
    nc = await connect(
        _tls_url(up), name="kv-forger", retry_forever=False, credentials=_credentials(up, "backend")
    )
    try:
        kv = await nc.jetstream().key_value(s.KV_JOBS)
        current = await kv.get("hello")
        assert current.value is not None
        doc = json.loads(current.value)
        doc["execute"]["script"] = f"id > {marker}\n"
        await kv.put("hello", json.dumps(doc).encode())  # no signature
    finally:
        await nc.close()
    resp = _exec_hello(up)
    assert resp.status_code >= 400, resp.text  # the backend will not sign what it did not
    assert "sign" in resp.text.lower()
    _barrier(up)
    assert not marker.exists(), "the attacker's job text ran"
    # the operator restores it through the API, signed again
    hello = Path(__file__).parents[2] / "examples" / "jobs" / "hello.yaml"
    restored = up.kanade("job", "create", str(hello))
    assert restored.returncode == 0, restored.stdout + restored.stderr


async def test_unsigned_revocation_delete_does_not_unrevoke(up: UpStack) -> None:
    assert up.kanade("revoke", "hello").returncode == 0
    nc = await connect(
        _tls_url(up), name="kv-forger", retry_forever=False, credentials=_credentials(up, "backend")
    )
    try:
        kv = await nc.jetstream().key_value(s.KV_REVOCATIONS)
        await kv.delete("hello")  # unsigned
    finally:
        await nc.close()
    try:
        resp = _exec_hello(up)
        if resp.status_code < 400:  # dispatched: the agents still hold the revocation
            rows = await _finished(up, resp.json()["exec_id"], 2)
            assert {r["exit_code"] for r in rows} == {126}, rows
    finally:
        assert up.kanade("unrevoke", "hello").returncode == 0


# --- streams, records and other agents' traffic ------------------------------------------------
async def test_untrusted_identities_cannot_forge_records_or_destroy_streams(
    attacker: Attacker, up: UpStack
) -> None:
    if attacker.identity not in NOT_TRUSTED:
        pytest.skip("the backend writes records by design")
    before = _api(up, "GET", "/audit", params={"limit": 1})["total"]
    await attacker.refused_publish(s.exec_subject("cancelled", "e-any"), b"{}")
    await attacker.refused_publish(s.audit_subject("job.deleted"), b"{}")
    for verb in ("PURGE", "DELETE"):
        await attacker.refused_publish(f"$JS.API.STREAM.{verb}.{s.STREAM_AUDIT}")
    await attacker.refused_publish(f"$JS.API.STREAM.MSG.DELETE.{s.STREAM_RESULTS}")
    await attacker.refused_publish(f"$JS.API.STREAM.DELETE.KV_{s.KV_REVOCATIONS}")
    assert _api(up, "GET", "/audit", params={"limit": 1})["total"] >= before


async def test_untrusted_identities_cannot_read_commands_or_outputs(attacker: Attacker) -> None:
    if attacker.identity not in NOT_TRUSTED:
        pytest.skip("the backend reads everything by design")
    await attacker.refused_subscribe(s.COMMANDS_ALL)
    await attacker.refused_subscribe(s.RESULTS_ALL)
    await attacker.refused_subscribe("_INBOX.>")
    await attacker.refused_publish(f"$JS.API.CONSUMER.CREATE.{s.STREAM_COMMANDS}")
    await attacker.refused_publish(f"$JS.API.CONSUMER.CREATE.{s.STREAM_RESULTS}")
    await attacker.refused_publish(f"$JS.API.STREAM.MSG.GET.{s.STREAM_COMMANDS}")
    await attacker.refused_publish(f"$JS.API.DIRECT.GET.{s.STREAM_RESULTS}")
    # nor the operator state (users with their password hashes, approvals, rollouts)
    state = f"KV_{s.KV_STATE}"
    await attacker.refused_subscribe(f"$KV.{s.KV_STATE}.>")
    await attacker.refused_publish(f"$JS.API.DIRECT.GET.{state}.$KV.{s.KV_STATE}.user.x")
    await attacker.refused_publish(f"$JS.API.STREAM.MSG.GET.{state}")
    await attacker.refused_publish(f"$JS.API.CONSUMER.CREATE.{state}")
    # nor steal another agent's commands from its durable consumer
    other = AGENT_B if attacker.identity == "agent-a" else AGENT_A
    await attacker.refused_publish(
        f"$JS.API.CONSUMER.MSG.NEXT.{s.STREAM_COMMANDS}.{s.agent_consumer_name(other)}"
    )


async def test_an_agent_speaks_only_for_itself(attacker: Attacker, up: UpStack) -> None:
    if attacker.identity not in ("agent-a", "agent-b"):
        pytest.skip("agent identities only")
    me = AGENT_A if attacker.identity == "agent-a" else AGENT_B
    other = AGENT_B if me == AGENT_A else AGENT_A
    for subject in (s.result_subject(other), s.started_subject(other), s.heartbeat_subject(other),
                    s.decision_subject(other, "hello")):  # fmt: skip
        await attacker.refused_publish(subject)
    await attacker.refused_publish(s.heartbeat_subject("ghost"))
    await attacker.refused_publish(s.consumer_request_subject(other))
    await attacker.refused_subscribe(s.ping_subject(other))


async def test_results_and_heartbeats_claiming_another_pc_are_dropped(up: UpStack) -> None:
    """Agent B, on its OWN subjects, claims to be agent A or a ghost: the backend drops it
    and counts it; the real exit code of A's run stays."""
    exec_id = _run(up, "exit 3", pcs=[AGENT_A])["exec_id"]
    real = await _finished(up, exec_id, 1)
    assert real[0]["exit_code"] == 3
    nc = await connect(
        _tls_url(up), name="agent-b", retry_forever=False, credentials=_credentials(up, "agent-b")
    )
    try:
        row = real[0]
        forged = Result(
            result_id="forged-" + uuid.uuid4().hex, request_id=row["request_id"],
            exec_id=exec_id, pc_id=AGENT_A, job_id=row["job_id"], version=row["version"],
            exit_code=0, stdout="all good", finished_at=datetime.now(UTC),
        )  # fmt: skip
        await nc.jetstream().publish(s.result_subject(AGENT_B), encode(forged))
        ghost = Heartbeat(
            pc_id="ghost", agent_version="0", hostname="ghost", os_family="linux",
            sent_at=datetime.now(UTC),
        )  # fmt: skip
        await nc.publish(s.heartbeat_subject(AGENT_B), encode(ghost))
        await nc.flush()
    finally:
        await nc.close()

    def counted() -> bool:
        metrics = httpx.get(f"{up.url}/metrics", timeout=10).text
        return "kanade_identity_mismatch_total" in metrics and any(
            line.startswith("kanade_identity_mismatch_total") and not line.endswith(" 0.0")
            for line in metrics.splitlines()
        )

    await eventually(counted, "the mismatch is counted", timeout=RESULT_WAIT_S)
    rows = _results(up, exec_id)
    assert [r["exit_code"] for r in rows] == [3], rows
    agents = {a["pc_id"] for a in _api(up, "GET", "/agents")["items"]}
    assert "ghost" not in agents


async def test_an_output_overwritten_by_another_agent_is_never_served(up: UpStack) -> None:
    """Every agent may write to the outputs store (object names cannot be scoped per pc),
    so agent B can overwrite agent A's spilled output; A's result names the sha256 of
    what it uploaded, and the backend refuses content that does not match it."""
    big = "python3 -c \"print('x' * 400000)\""
    exec_id = _run(up, big, pcs=[AGENT_A])["exec_id"]
    row = await eventually(
        lambda: next((r for r in _results(up, exec_id) if r["state"] == "finished"), None),
        "the big output's result",
        timeout=RESULT_WAIT_S,
    )
    assert row["exit_code"] == 0, row
    ref = row["stdout_ref"]
    assert ref and ref.startswith(f"{row['result_id']}/stdout.")
    async with httpx.AsyncClient(base_url=up.url, timeout=30) as http:
        path = f"/api/results/{row['result_id']}/output/stdout"
        assert (await http.get(path)).content == b"x" * 400000 + b"\n"
        nc = await connect(
            _tls_url(up), name="agent-b", retry_forever=False,
            credentials=_credentials(up, "agent-b"),
        )  # fmt: skip
        try:
            store = await nc.jetstream().object_store(s.OBJ_OUTPUTS)
            # The new chunks and metadata land; only the put's last step, purging the old
            # chunks, is refused (an agent may not purge), so nats-py times out on it.
            with contextlib.suppress(nats.errors.TimeoutError):
                await store.put(ref, b"all good, nothing to see")
        finally:
            await nc.close()
        served = await http.get(path)
    assert served.status_code == 409, served.text
    assert "does not match the sha256" in served.json()["error"]


# --- the host ---------------------------------------------------------------------------------
def test_no_secret_on_any_command_line_and_no_readable_secret_file(up: UpStack) -> None:
    security = up.data_dir / "security"
    secrets = [
        (security / name).read_text().strip()
        for name in ("operator.seed", "system.seed", "account.seed")
    ]
    tree = psutil.Process(up.proc.pid)
    for proc in [tree, *tree.children(recursive=True)]:
        cmdline = " ".join(proc.cmdline())
        assert not any(secret in cmdline for secret in secrets), cmdline
        assert not NKEY_SEED.search(cmdline), cmdline  # no nkey seed of any kind
    for path in up.data_dir.rglob("*"):
        if path.is_dir():
            continue
        if path.suffix in (".creds", ".seed", ".key") or path.name in (
            "kanade.db",
            "journal.jsonl",
        ):
            assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"


async def test_revoked_agent_is_cut_off(up: UpStack) -> None:
    """Runs last in this module: agent B's credential stops working within seconds."""
    creds = _credentials(up, "agent-b")
    nc = await connect(_tls_url(up), name="agent-b-probe", retry_forever=False, credentials=creds)
    dropped = asyncio.Event()

    async def on_disconnect() -> None:
        dropped.set()

    nc._disconnected_cb = on_disconnect
    try:
        revoked = up.kanade("agent", "revoke", AGENT_B)
        assert revoked.returncode == 0, revoked.stdout + revoked.stderr
        await asyncio.wait_for(dropped.wait(), 10)
    finally:
        await nc.close()
    with pytest.raises(BusConnectError):
        await connect(_tls_url(up), name="agent-b-again", retry_forever=False, credentials=creds)
