"""A secured broker (SPEC §8.1): JWT auth + TLS, the permission matrix enforced by a real
nats-server, revocation cutting an agent off within seconds."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors
import pytest

from kanade.bus.broker import EmbeddedBroker
from kanade.bus.connection import BusConnectError, connect
from kanade.bus.credentials import BusCredentials, CredentialsError
from kanade.bus.topology import ensure_topology
from kanade.core import subjects as s
from kanade.security import nats_jwt
from kanade.security.authority import Authority
from kanade.security.files import write_private
from kanade.security.permissions import agent_inbox_prefix, agent_permissions
from polling import eventually


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


def _agent_creds(authority: Authority, tmp_path: Path, pc: str) -> tuple[BusCredentials, str]:
    user = nats_jwt.new_identity("user")
    token = authority.mint_user(f"agent:{pc}", agent_permissions(pc), public_key=user.public_key)
    path = tmp_path / f"{pc}.creds"
    write_private(path, nats_jwt.creds_text(token, user.seed))
    return BusCredentials(path, authority.ca_file, agent_inbox_prefix(pc)), user.public_key


def test_authority_files_are_owner_only(authority: Authority) -> None:
    assert authority.root.stat().st_mode & 0o777 == 0o700
    for name in (
        "ca.key",
        "broker.key",
        "operator.seed",
        "account.seed",
        "backend.creds",
        "system.creds",
        "operator.creds",
    ):
        assert (authority.root / name).stat().st_mode & 0o777 == 0o600, name
    again = Authority.create(authority.root)  # idempotent: nothing is replaced
    assert again.account_jwt() == authority.account_jwt()


async def test_anonymous_and_untrusted_clients_are_refused(
    secure_broker: EmbeddedBroker, authority: Authority, tmp_path: Path
) -> None:
    plain_tls = ssl.create_default_context(cafile=str(authority.ca_file))
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            secure_broker.url, tls=plain_tls, allow_reconnect=False, connect_timeout=3
        )
    # A credential from another deployment's authority is refused too.
    other = Authority.create(tmp_path / "elsewhere")
    with pytest.raises(BusConnectError):
        await connect(
            secure_broker.url,
            name="stranger",
            retry_forever=False,
            credentials=BusCredentials(other.backend_creds, authority.ca_file),
        )
    # And a client that trusts another CA does not talk to our broker at all.
    with pytest.raises(BusConnectError):
        await connect(
            secure_broker.url,
            name="wrong-ca",
            retry_forever=False,
            credentials=BusCredentials(authority.backend_creds, other.ca_file),
        )


def test_missing_creds_file_is_named(tmp_path: Path, authority: Authority) -> None:
    creds = BusCredentials(tmp_path / "nope.creds", authority.ca_file)
    with pytest.raises(CredentialsError, match=r"nope\.creds"):
        creds.connect_options()


async def test_agent_identity_is_least_privilege(
    secure_broker: EmbeddedBroker, authority: Authority, tmp_path: Path
) -> None:
    backend = await connect(
        secure_broker.url,
        name="backend",
        retry_forever=False,
        credentials=BusCredentials(authority.backend_creds, authority.ca_file),
    )
    await ensure_topology(backend.jetstream())
    creds, _ = _agent_creds(authority, tmp_path, "pc-a")
    violations: list[str] = []

    async def on_error(exc: Exception) -> None:
        violations.append(str(exc))

    agent = await connect(
        secure_broker.url, name="pc-a", retry_forever=False, credentials=creds, error_cb=on_error
    )
    try:
        js = agent.jetstream(timeout=2)
        # allowed: its own result subject, reading the job catalog
        await js.publish(s.result_subject("pc-a"), b"{}")
        await js.key_value(s.KV_JOBS)
        # refused: another pc's subjects, commands, KV writes, stream admin
        for subject in (
            s.result_subject("pc-b"),
            s.command_subject("all", None, "x"),
            f"$KV.{s.KV_JOBS}.hello",
        ):
            await agent.publish(subject, b"forged")
        await agent.flush()
        await eventually(lambda: len(violations) >= 3, "three publish violations", timeout=5)
        assert all("permissions violation" in v for v in violations)
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await js.purge_stream(s.STREAM_AUDIT)
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await js.add_stream(name="EVIL", subjects=["evil.>"])
        info = await backend.jetstream().stream_info(s.STREAM_RESULTS)
        assert info.state.messages == 1  # only the legitimate result landed
    finally:
        await agent.close()
        await backend.close()


async def test_revoked_agent_is_cut_off_within_seconds_and_cannot_reconnect(
    secure_broker: EmbeddedBroker, authority: Authority, tmp_path: Path
) -> None:
    creds, public_key = _agent_creds(authority, tmp_path, "pc-r")
    gone = asyncio.Event()

    async def on_disconnect() -> None:
        gone.set()

    agent = await nats.connect(
        secure_broker.url,
        **creds.connect_options(),
        disconnected_cb=on_disconnect,
        reconnect_time_wait=0.2,
        max_reconnect_attempts=5,
    )
    system = await nats.connect(
        secure_broker.url,
        **BusCredentials(authority.system_creds, authority.ca_file).connect_options(),
    )
    try:
        account_jwt = authority.revoke([public_key])
        reply = await system.request(
            f"$SYS.REQ.ACCOUNT.{authority.account_public_key()}.CLAIMS.UPDATE",
            account_jwt.encode(),
            timeout=5,
        )
        assert b'"code":200' in reply.data
        await asyncio.wait_for(gone.wait(), 5)
        with pytest.raises(BusConnectError):
            await connect(
                secure_broker.url, name="pc-r again", retry_forever=False, credentials=creds
            )
    finally:
        await agent.close()
        await system.close()
    # The revocation survives a broker restart (the broker config preloads the saved JWT).
    secure_broker.restart()
    with pytest.raises(BusConnectError):
        await connect(
            secure_broker.url, name="pc-r after restart", retry_forever=False, credentials=creds
        )


async def test_operator_tools_set_up_and_inspect_but_cannot_purge_or_read(
    secure_broker: EmbeddedBroker, authority: Authority
) -> None:
    creds = BusCredentials(
        authority.operator_creds, authority.ca_file, Authority.operator_inbox_prefix()
    )
    nc = await connect(secure_broker.url, name="operator", retry_forever=False, credentials=creds)
    try:
        js = nc.jetstream(timeout=2)
        await ensure_topology(js)  # `kanade jetstream setup`
        await ensure_topology(js)  # idempotent: the update path is allowed too
        names = {info.config.name for info in await js.streams_info()}  # `status`
        assert s.STREAM_AUDIT in names
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await js.purge_stream(s.STREAM_AUDIT)
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await js.delete_stream(s.STREAM_AUDIT)
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await js.get_msg(s.STREAM_COMMANDS, seq=1)
    finally:
        await nc.close()
