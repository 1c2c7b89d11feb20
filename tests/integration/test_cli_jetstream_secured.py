"""`kanade jetstream setup|status` against a secured broker: the operator identity from
flags or the environment, and a clear refusal without one (SPEC §8.1)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kanade.bus.broker import EmbeddedBroker
from kanade.security.authority import Authority
from stack import BIN


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority.create(tmp_path / "security")


@pytest.fixture
def secure_broker(tmp_path: Path, authority: Authority) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(tmp_path / "nats", security=authority.broker_security())
    broker.start(timeout=15)
    try:
        yield broker
    finally:
        broker.stop()


def _jetstream(
    url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("KANADE_")}
    return subprocess.run(
        [str(BIN / "kanade"), "jetstream", *args, "--nats-url", url],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
        check=False,
    )


def test_setup_and_status_with_the_operator_credential(
    secure_broker: EmbeddedBroker, authority: Authority
) -> None:
    flags = ("--creds", str(authority.operator_creds), "--ca", str(authority.ca_file))
    setup = _jetstream(secure_broker.url, "setup", *flags)
    assert setup.returncode == 0, setup.stderr
    assert "in place" in setup.stdout
    # The same identity from the environment.
    env = {"KANADE_NATS_CREDS": str(authority.operator_creds),
           "KANADE_NATS_CA": str(authority.ca_file)}  # fmt: skip
    status = _jetstream(secure_broker.url, "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    streams = {json.loads(line)["stream"] for line in status.stdout.splitlines() if line}
    assert {"KANADE_COMMANDS", "KANADE_RESULTS", "KV_kanade_jobs", "OBJ_kanade_outputs"} <= streams


def test_without_a_credential_it_says_what_to_set(secure_broker: EmbeddedBroker) -> None:
    res = _jetstream(secure_broker.url, "status")
    assert res.returncode == 1
    for hint in ("--creds", "KANADE_NATS_CREDS", "KANADE_NATS_CA", "operator.creds"):
        assert hint in res.stderr, res.stderr
    only_one = _jetstream(secure_broker.url, "status", env={"KANADE_NATS_CREDS": "/x.creds"})
    assert only_one.returncode == 1 and "KANADE_NATS_CA" in only_one.stderr


def test_a_missing_file_or_a_foreign_credential_is_refused_clearly(
    secure_broker: EmbeddedBroker, authority: Authority, tmp_path: Path
) -> None:
    missing = _jetstream(
        secure_broker.url, "status", "--creds", str(tmp_path / "nope.creds"),
        "--ca", str(authority.ca_file),
    )  # fmt: skip
    assert missing.returncode == 1 and "nope.creds" in missing.stderr
    other = Authority.create(tmp_path / "elsewhere")
    foreign = _jetstream(
        secure_broker.url, "status", "--creds", str(other.operator_creds),
        "--ca", str(authority.ca_file),
    )  # fmt: skip
    assert foreign.returncode == 1
    assert str(other.operator_creds) in foreign.stderr and "operator credential" in foreign.stderr
