"""Enrolment and revocation through the API (SPEC §8.1), against a secured broker and a
real SQLite file: single-use tokens (concurrent uses: one wins), expiry, cancel, bad
input with field paths, the grant's credential working on the broker, revocation cutting
the agent off within seconds, and re-enrolment replacing (and revoking) the old key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from secure_backend import agent_creds_from_grant, secured_backend, secured_broker
from sqlalchemy import update

from kanade.backend.inprocess import InProcessBackend
from kanade.backend.store.tables import enroll_tokens
from kanade.bus.broker import EmbeddedBroker
from kanade.bus.connection import BusConnectError, connect
from kanade.core import subjects as s
from kanade.core.instants import system_clock
from kanade.security import nats_jwt
from kanade.security.authority import Authority
from polling import eventually

pytestmark = pytest.mark.stores  # SQLite and PostgreSQL (tests/pgdb.py)


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority.create(tmp_path / "security")


@pytest.fixture
def broker(tmp_path: Path, authority: Authority) -> Iterator[EmbeddedBroker]:
    with secured_broker(tmp_path, authority) as b:
        yield b


@pytest.fixture
async def backend(
    tmp_path: Path, broker: EmbeddedBroker, authority: Authority, store_url: str
) -> AsyncIterator[InProcessBackend]:
    async with secured_backend(tmp_path, broker, authority, store_url) as b:
        yield b


async def _token(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    res = await api.post("/api/agents/enroll-tokens", json=body)
    assert res.status_code == 200, res.text
    out: dict[str, Any] = res.json()
    return out


async def _enroll(
    api: httpx.AsyncClient, token: str, pc_id: str, user: nats_jwt.Identity | None = None
) -> httpx.Response:
    user = user or nats_jwt.new_identity("user")
    return await api.post(
        "/api/enroll", json={"token": token, "pc_id": pc_id, "public_key": user.public_key}
    )


async def test_a_token_enrols_one_pc_once_and_its_credential_works(
    backend: InProcessBackend, broker: EmbeddedBroker, authority: Authority, tmp_path: Path
) -> None:
    api = backend.client
    made = await _token(api, groups=["web", "canary"], expires="2h")
    assert len(made["token"]) >= 43 and made["groups"] == ["canary", "web"]
    # never mistaken for an option on the printed `kanade-agent enroll URL TOKEN` line
    assert made["token"].startswith("kanade-enrol-")
    listed = (await api.get("/api/agents/enroll-tokens")).json()
    assert [t["token_id"] for t in listed["items"]] == [made["token_id"]]
    assert "token" not in listed["items"][0] and "token_sha256" not in listed["items"][0]

    user = nats_jwt.new_identity("user")
    res = await _enroll(api, made["token"], "pc-new", user)
    assert res.status_code == 200, res.text
    grant = res.json()
    claims = nats_jwt.decode_claims(grant["user_jwt"])
    assert claims["sub"] == user.public_key and claims["name"] == "agent:pc-new"
    assert grant["ca_pem"] == authority.ca_file.read_text()
    assert grant["nats_urls"] == [broker.url]
    assert isinstance(grant["signing_keys"], list)

    # single use: the second use is refused, and the token is no longer open
    again = await _enroll(api, made["token"], "pc-other")
    assert again.status_code == 410 and "already used" in again.json()["error"]
    assert (await api.get("/api/agents/enroll-tokens")).json()["items"] == []

    # the token's groups were joined
    groups = (await api.get("/api/groups")).json()["membership"]
    assert groups["pc-new"] == ["canary", "web"]
    enrolled = (await api.get("/api/agents/enrolled")).json()["items"]
    assert [(a["pc_id"], a["status"], a["public_key"]) for a in enrolled] == [
        ("pc-new", "active", user.public_key)
    ]

    # the credential (granted JWT + the seed that never left "the machine") connects
    creds = agent_creds_from_grant(
        grant, user.seed, tmp_path / "a.creds", tmp_path / "ca.pem", "pc-new"
    )
    (tmp_path / "ca.pem").write_text(grant["ca_pem"])
    nc = await connect(broker.url, name="pc-new", retry_forever=False, credentials=creds)
    await nc.close()

    # audited: the enrolment and the refused second use
    async def audited() -> bool:
        rows = (await api.get("/api/audit", params={"limit": 100})).json()["items"]
        return {r["action"] for r in rows} >= {
            "enrolment.token_create",
            "agent.enroll",
            "agent.enroll_refuse",
        }

    await eventually(audited, "enrolment audit records", timeout=10)


async def test_two_concurrent_uses_of_one_token_exactly_one_wins(
    backend: InProcessBackend,
) -> None:
    made = await _token(backend.client)
    answers = await asyncio.gather(
        *(_enroll(backend.client, made["token"], f"race-{i}") for i in range(4))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 410, 410, 410], [a.text for a in answers]
    enrolled = (await backend.client.get("/api/agents/enrolled")).json()["items"]
    assert len(enrolled) == 1


async def test_expired_cancelled_and_unknown_tokens_are_refused_clearly(
    backend: InProcessBackend,
) -> None:
    api = backend.client
    expired = await _token(api, expires="1h")
    past = system_clock() - timedelta(seconds=1)
    await backend.services.db.write(
        lambda conn: conn.execute(
            update(enroll_tokens)
            .where(enroll_tokens.c.token_id == expired["token_id"])
            .values(expires_at=past)
        )
    )
    res = await _enroll(api, expired["token"], "pc-x")
    assert res.status_code == 410 and "expired" in res.json()["error"]

    cancelled = await _token(api)
    gone = await api.delete(f"/api/agents/enroll-tokens/{cancelled['token_id']}")
    assert gone.status_code == 200 and gone.json()["was_open"] is True
    assert (await api.get("/api/agents/enroll-tokens")).json()["items"] == []
    res = await _enroll(api, cancelled["token"], "pc-x")
    assert res.status_code == 410 and "cancelled" in res.json()["error"]
    assert (await api.delete("/api/agents/enroll-tokens/nope")).status_code == 404

    res = await _enroll(api, "not-a-token-anyone-made", "pc-x")
    assert res.status_code == 401 and "not recognised" in res.json()["error"]
    assert (await api.get("/api/agents/enrolled")).json()["items"] == []


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"expires": "8d"}, "expires"),
        ({"expires": "soon"}, "expires"),
        ({"expires": "0s"}, "expires"),
        ({"groups": ["ok", "not ok"]}, "groups[1]"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_token_requests_name_the_field(
    backend: InProcessBackend, body: dict[str, Any], path: str
) -> None:
    res = await backend.client.post("/api/agents/enroll-tokens", json=body)
    assert res.status_code == 400, res.text
    assert [e["path"] for e in res.json()["errors"]] == [path]


async def test_bad_enrolments_name_the_field_and_keep_the_token(
    backend: InProcessBackend,
) -> None:
    api = backend.client
    made = await _token(api)
    account = nats_jwt.new_identity("account").public_key
    for body, path in (
        ({"pc_id": "bad pc", "public_key": nats_jwt.new_identity("user").public_key}, "pc_id"),
        ({"pc_id": "pc-1", "public_key": account}, "public_key"),
        ({"pc_id": "pc-1", "public_key": "U" + "A" * 55}, "public_key"),
        ({"pc_id": "pc-1"}, "public_key"),
    ):
        res = await api.post("/api/enroll", json={"token": made["token"], **body})
        assert res.status_code == 400, res.text
        assert [e["path"] for e in res.json()["errors"]] == [path]
    # none of them used the token
    assert (await _enroll(api, made["token"], "pc-1")).status_code == 200


async def test_revoke_cuts_the_agent_off_and_refuses_its_reconnect(
    backend: InProcessBackend, broker: EmbeddedBroker, authority: Authority, tmp_path: Path
) -> None:
    api = backend.client
    user = nats_jwt.new_identity("user")
    grant = (await _enroll(api, (await _token(api))["token"], "pc-r", user)).json()
    creds = agent_creds_from_grant(
        grant, user.seed, tmp_path / "r.creds", authority.ca_file, "pc-r"
    )
    # a command consumer provisioned for it (as the backend does on request)
    bus = backend.services.link.bus()
    await bus.js.add_consumer(
        s.STREAM_COMMANDS,
        durable_name=s.agent_consumer_name("pc-r"),
        filter_subject=s.command_subject("pc", "pc-r", "x"),
    )
    gone = asyncio.Event()

    async def on_disconnect() -> None:
        gone.set()

    nc = await connect(
        broker.url,
        name="pc-r",
        retry_forever=False,
        credentials=creds,
        disconnected_cb=on_disconnect,
        reconnect_time_wait=0.2,
    )
    try:
        res = await api.post("/api/agents/pc-r/revoke")
        assert res.status_code == 200, res.text
        body = res.json()
        assert body["status"] == "revoked" and body["consumer_deleted"] is True
        await asyncio.wait_for(gone.wait(), 5)
        with pytest.raises(BusConnectError):
            await connect(broker.url, name="pc-r again", retry_forever=False, credentials=creds)
    finally:
        await nc.close()
    enrolled = (await api.get("/api/agents/enrolled")).json()["items"]
    assert enrolled[0]["status"] == "revoked" and enrolled[0]["revoked_by"] == "anonymous"
    assert (await api.post("/api/agents/nobody/revoke")).status_code == 404
    assert (await api.post("/api/agents/bad pc/revoke")).status_code == 400


async def test_re_enrolling_replaces_the_key_and_revokes_the_old_one(
    backend: InProcessBackend, broker: EmbeddedBroker, authority: Authority, tmp_path: Path
) -> None:
    api = backend.client
    old, new = nats_jwt.new_identity("user"), nats_jwt.new_identity("user")
    grant = (await _enroll(api, (await _token(api))["token"], "pc-k", old)).json()
    old_creds = agent_creds_from_grant(
        grant, old.seed, tmp_path / "old.creds", authority.ca_file, "pc-k"
    )
    res = await _enroll(api, (await _token(api))["token"], "pc-k", new)
    assert res.status_code == 200, res.text
    new_creds = agent_creds_from_grant(
        res.json(), new.seed, tmp_path / "new.creds", authority.ca_file, "pc-k"
    )
    with pytest.raises(BusConnectError):
        await connect(broker.url, name="old key", retry_forever=False, credentials=old_creds)
    nc = await connect(broker.url, name="new key", retry_forever=False, credentials=new_creds)
    await nc.close()
    enrolled = (await api.get("/api/agents/enrolled")).json()["items"]
    assert [(a["pc_id"], a["public_key"], a["status"]) for a in enrolled] == [
        ("pc-k", new.public_key, "active")
    ]

