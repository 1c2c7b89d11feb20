"""``kanade keys rotate`` end to end (SPEC §8.2): a real backend with its own key directory
and a real agent pinned to it. The agent learns the new key only from the key set the
backend announces signed by the old one; the old key is trusted until its retire instant.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_harness import build_command
from test_control_stack import ControlStack, start_stack, stop_stack, wait_until

from kanade.agent.trust import read_keyring
from kanade.core import exitcodes
from kanade.core.signing import Signer
from kanade.security.signing_keys import load_key_dir, write_keyring_file
from secured import connect_backend, session_authority

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores

PC = "rk-1"


@pytest.fixture
def stack(tmp_path: Path, store_url: str) -> Iterator[ControlStack]:
    keys = tmp_path / "keys"
    s = start_stack(tmp_path / "stack", backend_args=("--signing-keys", str(keys)), db=store_url)
    try:
        # The backend made its key at start-up; the agent pins it, as enrolment would.
        keyring = s.fleet.root / PC / "data" / "trust" / "keyring.json"
        write_keyring_file(keyring, load_key_dir(keys).keyring())
        s.agent(PC, extra_args=["--keyring", str(keyring)])
        yield s
    finally:
        stop_stack(s)


def run_ok(stack: ControlStack) -> None:
    created = stack.run_adhoc(PC, "true")
    row = stack.result_of(created["exec_id"], PC)
    assert row["exit_code"] == 0, row


def pinned(stack: ControlStack) -> set[str]:
    return set(read_keyring(stack.fleet[PC].data_dir / "trust" / "keyring.json").keys)


async def publish_signed_by(stack: ControlStack, signer: Signer, job_id: str) -> None:
    out = build_command(job_id, "true", target=PC)
    # the backend's NATS identity, but this test's signer (not the bus's)
    bus = await connect_backend(stack.broker.url, session_authority(), signer=None)
    try:
        headers = signer.command_headers(out.subject, out.raw)
        await bus.nc.jetstream().publish(out.subject, out.raw, headers=headers)
    finally:
        await bus.close()


def result_for(stack: ControlStack, job_id: str) -> dict[str, object]:
    def one() -> dict[str, object] | None:
        items = stack.http().get("/api/results", params={"job_id": job_id}).json()["items"]
        # A started event makes an in-flight row first: wait for the finished one.
        done = [r for r in items if r.get("state") != "in_flight"]
        return done[0] if done else None

    row: dict[str, object] = wait_until(one, what=f"result of {job_id}",
                                        diagnostics=stack.diagnostics)  # fmt: skip
    return row


async def test_after_a_rotation_agents_run_commands_signed_by_the_new_key(
    stack: ControlStack, tmp_path: Path
) -> None:
    key_dir = tmp_path / "keys"
    first = load_key_dir(key_dir)
    old_signer = first.signer()
    run_ok(stack)
    view = json.loads(stack.ok("keys", "rotate", "--overlap", "1h", "--json").stdout)
    assert view["previous"] == first.active and view["active"] != first.active
    assert load_key_dir(key_dir).active == view["active"]
    # The agent learned the new key from the announcement signed by the old one.
    wait_until(lambda: view["active"] in pinned(stack), what="the agent pins the new key",
               diagnostics=stack.diagnostics)  # fmt: skip
    assert first.active in pinned(stack)
    run_ok(stack)  # signed by the new key now
    # Within the overlap the old key is still trusted.
    await publish_signed_by(stack, old_signer, "rk-old-in-overlap")
    assert result_for(stack, "rk-old-in-overlap")["exit_code"] == 0

    # No overlap: the key that was active until now retires at once.
    second = load_key_dir(key_dir)
    view = json.loads(stack.ok("keys", "rotate", "--overlap", "0s", "--json").stdout)
    wait_until(lambda: view["active"] in pinned(stack), what="the agent pins the third key",
               diagnostics=stack.diagnostics)  # fmt: skip
    run_ok(stack)
    await publish_signed_by(stack, second.signer(), "rk-retired")
    row = result_for(stack, "rk-retired")
    assert (row["exit_code"], row["skipped"]) == (exitcodes.REFUSED, True), row
    assert "retired" in str(row["stderr"])
