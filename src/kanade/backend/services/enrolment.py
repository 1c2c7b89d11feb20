"""Enrolment and revocation of agents (SPEC §8.1).

An admin makes a one-time token; a machine running ``kanade-agent enroll`` sends it with
its pc_id and an nkey public key it generated itself, and gets a broker credential
(user JWT with that pc's permissions), the CA and the command-signing public keys. Revoking
a pc adds its key to the account's revocations and pushes the account JWT to the broker,
which drops the agent's connection at once and refuses its reconnects.

Tokens are stored as a sha256 only; using one is a single conditional UPDATE, so of two
concurrent uses exactly one wins. Every enrolment, refused enrolment and revocation is
audited. Why these choices: docs/enrolment.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import structlog

from kanade.backend.errors import Gone, Invalid, NotFound, Unauthenticated, Unavailable
from kanade.backend.messaging.audit import publish_audit
from kanade.backend.services.base import Service
from kanade.backend.services.groups import GroupService
from kanade.backend.services.slugs import require_slug
from kanade.backend.store import enrolment as store
from kanade.backend.store.database import Database
from kanade.bus.accounts import AccountUpdateError, push_account_jwt
from kanade.bus.connection import Bus
from kanade.bus.consumers import delete_consumer
from kanade.bus.credentials import BusCredentials
from kanade.core import subjects
from kanade.core.durations import format_duration, parse_duration
from kanade.core.instants import Clock, format_instant, system_clock
from kanade.security.authority import Authority, AuthorityError
from kanade.security.permissions import agent_permissions
from kanade.security.userkeys import user_key_problem

log = structlog.get_logger(__name__)

PublicKeys = Callable[[], list[dict[str, Any]]]
"""The command-signing public keyring handed to enrolling agents (``keyring.json`` keys)."""

DEFAULT_TOKEN_TTL: Final = timedelta(hours=1)
MAX_TOKEN_TTL: Final = timedelta(days=7)
TOKEN_BYTES: Final = 32
MAX_TOKEN_LENGTH: Final = 256
ASK_AGAIN: Final = "ask an admin for a new one (kanade agent enroll-token)"
TOKEN_PREFIX: Final = "kanade-enrol-"
"""Every token starts with it: it never begins with "-" (which a command line would take
for an option), and a secret scanner can recognise a leaked one."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_view(row: dict[str, Any]) -> dict[str, Any]:
    """A token as the API shows it (never the secret, never its hash)."""
    return {
        "token_id": row["token_id"],
        "groups": list(row["groups"] or []),
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "expires_at": row["expires_at"],
        "used_at": row["used_at"],
        "used_by_pc": row["used_by_pc"],
        "cancelled": bool(row["cancelled"]),
    }


def enrolled_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "pc_id": row["pc_id"],
        "public_key": row["public_key"],
        "enrolled_at": row["enrolled_at"],
        "token_id": row["token_id"],
        "status": "revoked" if row["revoked_at"] is not None else "active",
        "revoked_at": row["revoked_at"],
        "revoked_by": row["revoked_by"],
    }


class EnrolmentService(Service):
    def __init__(
        self,
        db: Database,
        bus: Callable[[], Bus],
        *,
        groups: GroupService,
        authority_dir: Path | None,
        broker_urls: list[str],
        agent_nats_urls: list[str],
        signing_keys: PublicKeys,
        clock: Clock = system_clock,
    ) -> None:
        super().__init__(db, bus, clock=clock)
        self._groups = groups
        self._authority_dir = authority_dir
        self._broker_urls = broker_urls
        self._agent_nats_urls = agent_nats_urls
        self._signing_keys = signing_keys
        # The account JWT is read, changed and pushed as one step: two revocations at
        # once must not push an older JWT last.
        self._account_lock = asyncio.Lock()

    # --- tokens --------------------------------------------------------------------------
    async def create_token(
        self, *, groups: list[str], expires: str | None, actor: str
    ) -> dict[str, Any]:
        for i, g in enumerate(groups):
            require_slug(g, f"groups[{i}]")
        ttl = self._ttl(expires)
        now = self._clock()
        token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
        token_id = secrets.token_hex(8)
        wanted = sorted(set(groups))
        await self._db.write(
            lambda conn: store.insert_token(
                conn,
                token_id=token_id,
                token_sha256=token_digest(token),
                groups=wanted,
                created_by=actor,
                created_at=now,
                expires_at=now + ttl,
            )
        )
        await publish_audit(
            self._bus,
            "enrolment.token_create",
            actor,
            {"token_id": token_id, "groups": wanted, "expires": format_duration(ttl)},
            at=now,
        )
        log.info("enrolment token created", token_id=token_id, groups=wanted, actor=actor)
        return {"token": token, "token_id": token_id, "groups": wanted, "expires_at": now + ttl}

    @staticmethod
    def _ttl(expires: str | None) -> timedelta:
        if expires is None:
            return DEFAULT_TOKEN_TTL
        try:
            ttl = parse_duration(expires)
        except ValueError as exc:
            raise Invalid.at("expires", str(exc)) from None
        if ttl <= timedelta(0) or ttl > MAX_TOKEN_TTL:
            raise Invalid.at(
                "expires",
                f"must be more than 0s and at most {format_duration(MAX_TOKEN_TTL)} "
                f"(got {expires})",
            )
        return ttl

    async def tokens(self) -> list[dict[str, Any]]:
        now = self._clock()
        rows = await self._db.read(lambda conn: store.open_tokens(conn, now))
        return [token_view(r) for r in rows]

    async def cancel_token(self, token_id: str, *, actor: str) -> dict[str, Any]:
        def cancel(conn: Any) -> tuple[dict[str, Any] | None, bool]:
            done = store.cancel_token(conn, token_id)
            return store.get_token(conn, token_id), done

        row, done = await self._db.write(cancel)
        if row is None:
            raise NotFound(f"enrolment token {token_id!r} not found", token_id=token_id)
        if done:
            await publish_audit(
                self._bus, "enrolment.token_cancel", actor, {"token_id": token_id}, at=self._clock()
            )
        return {**token_view(row), "was_open": done}

    # --- enrolment -----------------------------------------------------------------------
    async def enroll(self, *, token: str, pc_id: str, public_key: str) -> dict[str, Any]:
        """Trade a token for a broker credential for ``public_key`` as ``pc_id``."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise Invalid.at("token", f"must be 1-{MAX_TOKEN_LENGTH} characters")
        require_slug(pc_id, "pc_id")
        problem = user_key_problem(public_key)
        if problem is not None:
            raise Invalid.at("public_key", problem)
        authority = self._authority()
        self._bus()  # groups and key replacement need the broker: refuse before using the token
        now = self._clock()
        digest = token_digest(token)
        row = await self._db.read(lambda conn: store.find_token(conn, digest))
        if row is None or not hmac.compare_digest(str(row["token_sha256"]), digest):
            await self._refused(pc_id, None, "unknown token", now)
            raise Unauthenticated(f"enrolment token not recognised: {ASK_AGAIN}")
        token_id = str(row["token_id"])
        closed = self._closed(row, now)  # a clear message before the atomic claim
        if closed is not None:
            await self._refused(pc_id, token_id, closed[0], now)
            raise Gone(f"{closed[1]}: {ASK_AGAIN}", token_id=token_id, reason=closed[0])

        def claim(conn: Any) -> tuple[bool, dict[str, Any] | None]:
            if not store.claim_token(conn, token_id, pc_id, now):
                return False, None
            previous = store.get_enrolled(conn, pc_id)
            store.put_enrolled(conn, pc_id=pc_id, public_key=public_key, token_id=token_id, now=now)
            return True, previous

        claimed, previous = await self._db.write(claim)
        if not claimed:  # lost a race with another use of the same token
            await self._refused(pc_id, token_id, "already used", now)
            raise Gone(
                f"enrolment token {token_id} was already used: {ASK_AGAIN}",
                token_id=token_id,
                reason="already used",
            )
        replaced = None
        if previous is not None and previous["public_key"] != public_key:
            replaced = str(previous["public_key"])
            if previous["revoked_at"] is None:
                await self._revoke_keys(authority, [replaced])
        user_jwt = authority.mint_user(
            f"agent:{pc_id}", agent_permissions(pc_id), public_key=public_key
        )
        actor = f"enroll-token:{token_id}"
        for group in row["groups"] or []:
            await self._groups.add_members(group, [pc_id], actor=actor)
        await publish_audit(
            self._bus,
            "agent.enroll",
            actor,
            {
                "pc_id": pc_id,
                "token_id": token_id,
                "public_key": public_key,
                "groups": list(row["groups"] or []),
                "replaced_key": replaced,
            },
            at=now,
        )
        log.info("agent enrolled", pc_id=pc_id, token_id=token_id, replaced_key=replaced)
        return {
            "pc_id": pc_id,
            "user_jwt": user_jwt,
            "ca_pem": authority.ca_file.read_text(),
            "nats_urls": list(self._agent_nats_urls),
            "signing_keys": list(self._signing_keys()),
        }

    @staticmethod
    def _closed(row: dict[str, Any], now: datetime) -> tuple[str, str] | None:
        """(reason, message) when the token can no longer be used."""
        token_id = row["token_id"]
        if row["cancelled"]:
            return "cancelled", f"enrolment token {token_id} was cancelled"
        if row["used_at"] is not None:
            return "already used", f"enrolment token {token_id} was already used"
        if row["expires_at"] <= now:
            expired = format_instant(row["expires_at"])
            return "expired", f"enrolment token {token_id} expired at {expired}"
        return None

    async def _refused(self, pc_id: str, token_id: str | None, reason: str, at: datetime) -> None:
        log.warning("enrolment refused", pc_id=pc_id, token_id=token_id, reason=reason)
        await publish_audit(
            self._bus,
            "agent.enroll_refuse",
            "anonymous",
            {"pc_id": pc_id, "token_id": token_id, "reason": reason},
            at=at,
        )

    # --- revocation ----------------------------------------------------------------------
    async def revoke(self, pc_id: str, *, actor: str) -> dict[str, Any]:
        """Cut the pc off the broker now and for good (until it enrols again)."""
        require_slug(pc_id, "pc_id")
        authority = self._authority()
        bus = self._bus()
        row = await self._db.read(lambda conn: store.get_enrolled(conn, pc_id))
        if row is None:
            raise NotFound(f"agent {pc_id!r} is not enrolled", pc_id=pc_id)
        was_revoked = row["revoked_at"] is not None
        await self._revoke_keys(authority, [str(row["public_key"])])
        # Its queued commands are no longer for anyone: drop the consumer it pulled from.
        consumer_deleted = await delete_consumer(
            bus.js, subjects.STREAM_COMMANDS, subjects.agent_consumer_name(pc_id)
        )
        now = self._clock()
        await self._db.write(lambda conn: store.mark_revoked(conn, pc_id, now=now, by=actor))
        await publish_audit(
            self._bus,
            "agent.revoke",
            actor,
            {"pc_id": pc_id, "public_key": row["public_key"], "was_revoked": was_revoked},
            at=now,
        )
        log.info("agent revoked", pc_id=pc_id, actor=actor, was_revoked=was_revoked)
        current = await self._db.read(lambda conn: store.get_enrolled(conn, pc_id))
        assert current is not None
        return {
            **enrolled_view(current),
            "was_revoked": was_revoked,
            "consumer_deleted": consumer_deleted,
        }

    async def _revoke_keys(self, authority: Authority, keys: list[str]) -> None:
        async with self._account_lock:
            account_jwt = authority.revoke(keys)
            system = BusCredentials(authority.system_creds, authority.ca_file)
            try:
                await push_account_jwt(
                    self._broker_urls, system, authority.account_public_key(), account_jwt
                )
            except AccountUpdateError as exc:
                # Saved in the trust dir (the broker loads it at its next start) but not
                # live yet: say so, the operator retries.
                raise Unavailable(
                    f"revocation saved but not applied by the broker yet: {exc}; retry"
                ) from None

    async def enrolled(self) -> list[dict[str, Any]]:
        rows = await self._db.read(store.list_enrolled)
        return [enrolled_view(r) for r in rows]

    def _authority(self) -> Authority:
        if self._authority_dir is None:
            raise Unavailable(
                "enrolment needs the deployment's trust dir: start the backend with "
                "--authority DIR (env KANADE_AUTHORITY_DIR)"
            )
        try:
            return Authority.load(self._authority_dir)
        except AuthorityError as exc:
            raise Unavailable(str(exc)) from None
