"""Updating an account on a running broker (decentralized JWT auth, SPEC §8.1).

A new account JWT (e.g. with a user added to its revocations) is pushed through the system
account: the broker verifies the operator's signature, applies it at once (a revoked user's
connections are closed) and, with the full resolver, stores it so it survives a restart.
"""

from __future__ import annotations

import json
from typing import Final

import nats.errors

from kanade.bus.connection import connect
from kanade.bus.credentials import BusCredentials

__all__ = ["AccountUpdateError", "claims_update_subject", "push_account_jwt"]

_OK: Final = 200


class AccountUpdateError(RuntimeError):
    """The broker did not take the account JWT (unreachable, or it refused it)."""


def claims_update_subject(account_public_key: str) -> str:
    """The system-account request subject that replaces one account's claims."""
    return f"$SYS.REQ.ACCOUNT.{account_public_key}.CLAIMS.UPDATE"


async def push_account_jwt(
    servers: str | list[str],
    system: BusCredentials,
    account_public_key: str,
    account_jwt: str,
    *,
    timeout: float = 5.0,
) -> None:
    """Send ``account_jwt`` to the broker as the system user; raise
    :class:`AccountUpdateError` unless the broker answers with code 200."""
    try:
        nc = await connect(
            servers, name="kanade-account-update", retry_forever=False, credentials=system
        )
    except ConnectionError as exc:
        raise AccountUpdateError(f"cannot reach the broker as the system user: {exc}") from None
    try:
        reply = await nc.request(
            claims_update_subject(account_public_key), account_jwt.encode(), timeout=timeout
        )
    except (nats.errors.Error, TimeoutError) as exc:
        raise AccountUpdateError(
            f"the broker did not answer the account update ({type(exc).__name__})"
        ) from None
    finally:
        await nc.close()
    try:
        answer = json.loads(reply.data)
    except ValueError:
        answer = {}
    data = answer.get("data") if isinstance(answer, dict) else None
    code = data.get("code") if isinstance(data, dict) else None
    if code != _OK:
        raise AccountUpdateError(f"the broker refused the account update: {reply.data[:300]!r}")
