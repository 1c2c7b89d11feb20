"""Signed commands end to end (SPEC §8.2): a real backend and real agents refuse every
command the backend did not sign for them, with exactly one 123 result that reaches the
backend (and so ``/api/results``), and the script never runs.

Each attack publishes straight onto the command stream, as anyone able to publish there
could: unsigned, tampered (one byte), signed by another key, expired, dated in the
future, re-addressed to another pc or group, and replayed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from agent_harness import Outgoing, build_command, publish
from nats.aio.client import Client
from test_control_stack import ControlStack, start_stack, stop_stack, wait_until

import trust
from kanade.bus.kv import kv_subject
from kanade.core import exitcodes, subjects
from kanade.core.instants import system_clock
from kanade.core.models.wire import encode
from kanade.core.signing import KeyPair, Signer
from secured import backend_credentials, session_authority

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

PC = "sg-1"
OTHER_PC = "sg-2"
GROUP = "sgrp"
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, module_store_url: str
) -> Iterator[ControlStack]:
    s = start_stack(tmp_path_factory.mktemp("signed"), db=module_store_url)
    try:
        s.agent(PC, (GROUP,))
        s.agent(OTHER_PC)
        yield s
    finally:
        stop_stack(s)


@pytest.fixture
async def nc(stack: ControlStack) -> AsyncIterator[Client]:
    client = await nats.connect(stack.broker.url, name="pytest-attacker", **_broker_identity())
    try:
        yield client
    finally:
        await client.close()


def job(kind: str) -> str:
    return f"sg-{kind}-{next(_ids)}"


def attack(stack: ControlStack, job_id: str, marker: Path, **fields: Any) -> Outgoing:
    """A command whose script would leave ``marker`` behind; addressed to ``PC``."""
    assert stack.fleet[PC].data_dir.exists()
    return build_command(job_id, f"echo ran >> {marker}", target=PC, **fields)


def rows(stack: ControlStack, job_id: str) -> list[dict[str, Any]]:
    r = stack.http().get("/api/results", params={"job_id": job_id})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def barrier(stack: ControlStack, pc: str = PC) -> None:
    """A legitimate run on ``pc`` finished: whatever the agent took in before it has been
    admitted and reported (its outbox drains in order)."""
    created = stack.run_adhoc(pc, "true")
    assert stack.result_of(created["exec_id"], pc)["exit_code"] == 0


def refused_once(stack: ControlStack, job_id: str, reason: str, pc: str = PC) -> dict[str, Any]:
    """Exactly one result for ``job_id``: 123, skipped, its stderr naming ``reason``."""
    wait_until(lambda: rows(stack, job_id), what=f"a result for {job_id}",
               diagnostics=stack.diagnostics)  # fmt: skip
    barrier(stack, pc)
    found = rows(stack, job_id)
    assert len(found) == 1, found
    row = found[0]
    assert (row["pc_id"], row["exit_code"], row["skipped"]) == (pc, exitcodes.REFUSED, True), row
    assert reason in row["stderr"], row["stderr"]
    return row


async def test_an_unsigned_command_is_refused_with_one_123_result_and_never_runs(
    stack: ControlStack, nc: Client, tmp_path: Path
) -> None:
    marker, job_id = tmp_path / "ran", job("unsigned")
    await publish(nc.jetstream(), attack(stack, job_id, marker), signed=False)
    refused_once(stack, job_id, "unsigned")
    assert not marker.exists()


async def test_a_command_with_one_byte_changed_after_signing_is_refused(
    stack: ControlStack, nc: Client, tmp_path: Path
) -> None:
    marker, job_id = tmp_path / "ran", job("tampered")
    out = attack(stack, job_id, marker)
    headers = Signer(_session_pair()).command_headers(out.subject, out.raw)
    tampered = out.raw.replace(b"echo ran", b"echo RAN")
    assert len(tampered) == len(out.raw) and tampered != out.raw
    await nc.jetstream().publish(out.subject, tampered, headers=headers)
    refused_once(stack, job_id, "bad signature")
    assert not marker.exists()


async def test_a_command_signed_by_another_key_is_refused(
    stack: ControlStack, nc: Client, tmp_path: Path
) -> None:
    marker, job_id = tmp_path / "ran", job("wrongkey")
    out = attack(stack, job_id, marker)
    headers = Signer(KeyPair.generate()).command_headers(out.subject, out.raw)
    await nc.jetstream().publish(out.subject, out.raw, headers=headers)
    refused_once(stack, job_id, "unknown key")
    assert not marker.exists()


async def test_an_expired_command_is_refused(
    stack: ControlStack, nc: Client, tmp_path: Path
) -> None:
    marker, job_id = tmp_path / "ran", job("expired")
    issued = system_clock() - timedelta(days=7, minutes=1)
    await publish(nc.jetstream(), attack(stack, job_id, marker, issued_at=issued))
    refused_once(stack, job_id, "expired at")
    assert not marker.exists()


async def test_a_command_issued_in_the_future_is_refused(
    stack: ControlStack, nc: Client, tmp_path: Path
) -> None:
    marker, job_id = tmp_path / "ran", job("future")
    issued = system_clock() + timedelta(hours=1)
    await publish(nc.jetstream(), attack(stack, job_id, marker, issued_at=issued))
    refused_once(stack, job_id, "issued in the future")
    assert not marker.exists()


async def test_a_command_for_another_pc_republished_to_this_pc_is_refused(
    stack: ControlStack, nc: Client, tmp_path: Path
) -> None:
    marker, job_id = tmp_path / "ran", job("otherpc")
    genuine = build_command(job_id, f"echo ran >> {marker}", target=OTHER_PC)
    headers = Signer(_session_pair()).command_headers(genuine.subject, genuine.raw)
    mine = subjects.command_subject("pc", PC, job_id)
    await nc.jetstream().publish(mine, genuine.raw, headers=headers)
    row = refused_once(stack, job_id, "not addressed to this pc")
    assert f"signed for {genuine.subject}" in row["stderr"]
    assert not marker.exists()


async def test_a_group_command_republished_to_a_group_this_pc_is_in_is_refused(
    stack: ControlStack, nc: Client, tmp_path: Path
) -> None:
    marker, job_id = tmp_path / "ran", job("othergroup")
    genuine = build_command(job_id, f"echo ran >> {marker}", scope="group", target="elsewhere")
    headers = Signer(_session_pair()).command_headers(genuine.subject, genuine.raw)
    await nc.jetstream().publish(
        subjects.command_subject("group", GROUP, job_id), genuine.raw, headers=headers
    )
    refused_once(stack, job_id, "not addressed to this pc")
    assert not marker.exists()


async def test_a_replayed_command_runs_once_and_the_replay_gets_one_123_result(
    stack: ControlStack, nc: Client, tmp_path: Path
) -> None:
    marker, job_id = tmp_path / "ran", job("replay")
    out = attack(stack, job_id, marker)
    js = nc.jetstream()
    await publish(js, out, headers={"Nats-Msg-Id": "first"})
    wait_until(lambda: marker.exists() and rows(stack, job_id), what="the genuine run",
               diagnostics=stack.diagnostics)  # fmt: skip
    # The same bytes and signature again, as a new stream message.
    await publish(js, out, headers={"Nats-Msg-Id": "again"})
    wait_until(lambda: len(rows(stack, job_id)) >= 2, what="the replay's result",
               diagnostics=stack.diagnostics)  # fmt: skip
    barrier(stack)
    found = sorted(rows(stack, job_id), key=lambda r: r["exit_code"])
    assert [(r["exit_code"], r["skipped"]) for r in found] == [(0, False), (123, True)], found
    assert "replay of request_id" in found[1]["stderr"]
    assert marker.read_text() == "ran\n"


def _session_pair() -> KeyPair:
    return trust.signer().active


async def test_an_exec_of_a_job_rewritten_in_kv_by_anyone_else_is_refused(
    stack: ControlStack, nc: Client, tmp_path: Path
) -> None:
    """The issue's attack: the job catalog rewritten behind the backend's back, then an
    operator's ordinary exec. The backend signs only jobs it signed itself."""
    marker, job_id = tmp_path / "ran", job("kvjob")
    stack.create_job(
        f"id: {job_id}\nversion: '1'\nexecute:\n  shell: sh\n  script: 'true'\n  timeout: 30s\n",
        tmp_path / "job.yaml",
    )
    evil = json.dumps(
        {
            "id": job_id,
            "version": "1",
            "execute": {"shell": "sh", "script": f"echo ran >> {marker}", "timeout": "30s"},
        }
    ).encode()
    await nc.jetstream().publish(kv_subject(subjects.KV_JOBS, job_id), evil)
    r = stack.http().post(f"/api/exec/{job_id}", json={"target": {"pcs": [PC]}})
    assert r.status_code == 500, r.text
    assert "not signed by this backend" in r.text
    barrier(stack)
    assert rows(stack, job_id) == [] and not marker.exists()


async def test_one_command_reaching_a_pc_on_two_of_its_addresses_runs_once_without_refusal(
    stack: ControlStack, nc: Client, tmp_path: Path
) -> None:
    """Not a replay: the backend publishes one command on each address subject, and a pc
    in a targeted group that is also listed by name receives both."""
    marker, job_id = tmp_path / "ran", job("twoaddr")
    out = build_command(job_id, f"echo ran >> {marker}", target=PC)
    cmd = out.command.model_copy(
        update={"address": out.command.address.model_copy(update={"groups": [GROUP]})}
    )
    raw = encode(cmd)
    js = nc.jetstream()
    for subject in (subjects.command_subject("group", GROUP, job_id), out.subject):
        await js.publish(subject, raw, headers=trust_headers(subject, raw))
    wait_until(lambda: rows(stack, job_id), what="the run", diagnostics=stack.diagnostics)
    barrier(stack)
    found = rows(stack, job_id)
    assert [(r["exit_code"], r["skipped"]) for r in found] == [(0, False)], found
    assert marker.read_text() == "ran\n"


def trust_headers(subject: str, raw: bytes) -> dict[str, str]:
    return trust.command_headers(subject, raw)


def _broker_identity() -> dict[str, object]:
    """The backend's NATS credential without its signing key: what an attacker who stole
    the broker credential holds (every broker in the suite is secured, SPEC §8.1)."""
    return backend_credentials(session_authority()).connect_options()
