"""The benchmarks run secured (SPEC §10.2, "security costs little"): the swarm connects to
a secured broker with the credential ``kanade bench`` writes into its trust dir, and runs
commands sent to its simulated agents."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from kanade.bench.common import BIN, Proc
from kanade.bench.security import (
    probe_credentials,
    secure_broker,
    swarm_args,
    write_swarm_trust,
)
from kanade.bus.connection import MSG_ID_HEADER, connect
from kanade.bus.topology import ensure_topology
from kanade.core import subjects
from kanade.core.ids import new_id
from kanade.core.instants import system_clock
from kanade.core.models.wire import Command, CommandAddress, encode
from kanade.core.msgids import command_msg_id
from kanade.core.signing import command_expiry
from kanade.security.signing_keys import load_key_dir
from polling import wait_until

N = 5


def test_swarm_connects_with_its_credential_and_runs_commands(tmp_path: Path) -> None:
    broker, authority = secure_broker(tmp_path)
    broker.start(timeout=15)
    swarm: Proc | None = None
    try:
        trust = write_swarm_trust(authority, tmp_path / "swarm", tmp_path / "keys")
        assert (trust / "agent.creds").stat().st_mode & 0o777 == 0o600
        probe = probe_credentials(authority)

        async def prepare() -> None:
            nc = await connect(broker.url, name="probe", retry_forever=False, credentials=probe)
            await ensure_topology(nc.jetstream())
            await nc.close()

        asyncio.run(prepare())
        swarm = Proc(
            [str(BIN / "kanade-agent"), "swarm", "--agents", str(N), "--nats-url", broker.url,
             "--data-dir", str(tmp_path / "swarm"), *swarm_args(trust), "--exec", "stub"],
            tmp_path / "swarm.log",
        )  # fmt: skip
        swarm.wait_for("swarm ready", 60)

        async def fan_out() -> set[str]:
            nc = await connect(broker.url, name="probe", retry_forever=False, credentials=probe)
            signer = load_key_dir(tmp_path / "keys").signer()
            seen: set[str] = set()
            done = asyncio.Event()

            async def on_result(msg: object) -> None:
                result = json.loads(msg.data)  # type: ignore[attr-defined]
                assert result["exit_code"] == 0, result  # signed like a backend: it ran
                seen.add(result["pc_id"])
                if len(seen) >= N:
                    done.set()

            await nc.subscribe(subjects.result_subject("*"), cb=on_result)
            now = system_clock()
            cmd = Command(
                request_id=new_id(), exec_id=new_id(), job_id="bench-secured", version="1",
                shell="sh", script="echo ok", timeout_s=30, issued_at=now,
                address=CommandAddress(all=True), expires_at=command_expiry(now),
            )  # fmt: skip
            subject = subjects.command_subject("all", None, cmd.job_id)
            await nc.jetstream().publish(
                subject,
                encode(cmd),
                headers={
                    MSG_ID_HEADER: command_msg_id(cmd.request_id, subject),
                    **signer.command_headers(subject, encode(cmd)),
                },
            )
            await asyncio.wait_for(done.wait(), 30)
            await nc.close()
            return seen

        assert asyncio.run(fan_out()) == {f"sim-{i}" for i in range(N)}
    finally:
        if swarm is not None:
            swarm.stop(timeout=30)
        broker.stop()


def test_swarm_with_another_deployments_credential_is_refused(tmp_path: Path) -> None:
    broker, authority = secure_broker(tmp_path)
    broker.start(timeout=15)
    _, other = secure_broker(tmp_path / "elsewhere")
    trust = write_swarm_trust(other, tmp_path / "swarm", tmp_path / "keys")
    (trust / "ca.pem").write_bytes(authority.ca_file.read_bytes())  # it trusts our broker
    swarm = Proc(
        [str(BIN / "kanade-agent"), "swarm", "--agents", "1", "--nats-url", broker.url,
         "--data-dir", str(tmp_path / "swarm"), *swarm_args(trust)],
        tmp_path / "swarm.log",
    )  # fmt: skip
    try:
        wait_until(
            lambda: "Authorization Violation" in swarm.log.read_text(errors="replace"),
            what="the broker refusing the swarm",
        )
        assert "swarm ready" not in swarm.log.read_text()
    finally:
        swarm.stop(timeout=30)
        broker.stop()
    assert swarm.proc.returncode == 0  # a swarm still connecting stops at once
