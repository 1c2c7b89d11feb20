"""The backend's broker link outlives a connection the broker gave up for good (issue #13).

nats-py closes a connection for good when the broker answers it with an error — here the
backend's own credential revoked — and everything bound to it would wait forever. The
backend notices, answers 503 meanwhile, and connects again with whatever credential its
authority holds by then: a rotated backend credential takes effect without a restart.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from kanade.bus.accounts import push_account_jwt
from kanade.bus.credentials import BusCredentials
from kanade.security import nats_jwt
from kanade.security.permissions import backend_permissions
from polling import wait_until
from stack import start_backend, stop_backend

# The backend process's store: SQLite and PostgreSQL (conftest: stores).
pytestmark = pytest.mark.stores


def _health(url: str) -> dict[str, object]:
    return dict(httpx.get(f"{url}/health", timeout=5).json())


def test_a_backend_cut_off_by_the_broker_connects_again_with_its_new_credential(
    tmp_path: Path, store_url: str
) -> None:
    stack = start_backend(tmp_path / "stack", authority=tmp_path / "authority", db=store_url)
    try:
        auth = stack.authority
        wait_until(lambda: _health(stack.url)["broker"] is True, "the backend is linked")
        old_jwt, _seed = nats_jwt.parse_creds(auth.backend_creds.read_text())
        old = nats_jwt.decode_claims(old_jwt)
        system = BusCredentials(auth.system_creds, auth.ca_file)
        account = auth.revoke([str(old["sub"])], at=int(old["iat"]))
        asyncio.run(push_account_jwt(stack.broker.url, system, auth.account_public_key(), account))
        wait_until(
            lambda: _health(stack.url)["broker"] is False,
            "the revoked backend credential is cut off",
            timeout=10,
            diagnostics=stack.log.read_text,
        )
        # A new backend credential (a fresh key, so the revocation does not name it).
        auth.write_creds(auth.backend_creds, "kanade-backend", backend_permissions())
        wait_until(
            lambda: _health(stack.url)["broker"] is True,
            "the same backend process links again with its new credential",
            timeout=20,
            diagnostics=stack.log.read_text,
        )
        assert stack.proc.poll() is None
        assert "closed the backend's connection; connecting again" in stack.log.read_text()
        # and it works: its API reaches the broker again
        listed = httpx.get(f"{stack.url}/api/config", timeout=10)
        assert listed.status_code == 200, listed.text
    finally:
        stop_backend(stack)
