"""One deployment's trust root on disk: the TLS CA, the broker certificate, the NATS
operator, its two accounts (SYS, KANADE) and the role credentials (SPEC §8.1).

``kanade up`` (and ``kanade security init``) creates it once; the broker config, the
backend's own credential and every agent credential minted at enrolment derive from it.
Layout (directory 0700; ``*.seed``, ``*.key`` and ``*.creds`` files 0600)::

    ca.pem ca.key            the CA clients pin
    broker.pem broker.key    the broker's server certificate (names: loopback + host)
    operator.seed operator.jwt
    system.seed system.jwt   the account the broker reports through; revocations are
                             pushed with system.creds
    account.seed account.jwt the KANADE account (account.jwt carries the revocations)
    backend.creds system.creds operator.creds
    route.pem route.key      a cluster node's route certificate (server + client auth)
    route.secret             the route password every cluster node presents and demands
                             (both made on first use: a single broker has no routes)
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kanade.bus.broker import BrokerSecurity, RouteSecurity
from kanade.bus.credentials import AGENT_CA, AGENT_CREDS
from kanade.security import nats_jwt, pki
from kanade.security.files import private_dir, write_private, write_public
from kanade.security.nats_jwt import Identity
from kanade.security.permissions import (
    OPERATOR_INBOX_PREFIX,
    Permissions,
    agent_permissions,
    backend_permissions,
    operator_permissions,
)

__all__ = ["Authority", "AuthorityError"]

ACCOUNT_NAME: Final = "KANADE"

SYSTEM_ACCOUNT_NAME: Final = "SYS"

ROUTE_USER: Final = "kanade-route"


class AuthorityError(RuntimeError):
    """The trust directory is missing a file or holds something unreadable."""


@dataclass(frozen=True)
class Authority:
    root: Path

    # --- paths --------------------------------------------------------------------------
    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    @property
    def backend_creds(self) -> Path:
        return self.root / "backend.creds"

    @property
    def system_creds(self) -> Path:
        return self.root / "system.creds"

    @property
    def operator_creds(self) -> Path:
        return self.root / "operator.creds"

    # --- creation -----------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, *, broker_names: list[str] | None = None) -> Authority:
        """Load the authority in ``root``, creating whatever is missing (idempotent: an
        existing CA, operator or account is never replaced — agents hold credentials
        and the CA that depend on them)."""
        private_dir(root)
        auth = cls(root)
        if not (root / "ca.pem").exists():
            ca = pki.new_ca()
            write_private(root / "ca.key", ca.key_pem)
            write_public(root / "ca.pem", ca.cert_pem)
        if not (root / "broker.pem").exists():
            server = pki.issue_server_cert(auth._ca(), broker_names or pki.default_broker_names())
            write_private(root / "broker.key", server.key_pem)
            write_public(root / "broker.pem", server.cert_pem)
        operator = auth._identity("operator", "operator")
        system = auth._identity("system", "account")
        auth._identity("account", "account")  # created here, read back when minting
        if not (root / "operator.jwt").exists():
            write_public(
                root / "operator.jwt",
                nats_jwt.encode_jwt(
                    operator,
                    operator.public_key,
                    "kanade",
                    nats_jwt.operator_claims(system.public_key),
                ),
            )
        if not (root / "system.jwt").exists():
            write_public(
                root / "system.jwt",
                nats_jwt.encode_jwt(
                    operator,
                    system.public_key,
                    SYSTEM_ACCOUNT_NAME,
                    nats_jwt.account_claims(jetstream=False),
                ),
            )
        if not (root / "account.jwt").exists():
            auth._write_account_jwt({})
        if not auth.system_creds.exists():
            user = nats_jwt.new_identity("user")
            token = nats_jwt.encode_jwt(
                system,
                user.public_key,
                "kanade-system",
                nats_jwt.user_claims(pub_allow=None, sub_allow=None),
            )
            write_private(auth.system_creds, nats_jwt.creds_text(token, user.seed))
        if not auth.backend_creds.exists():
            auth.write_creds(auth.backend_creds, "kanade-backend", backend_permissions())
        if not auth.operator_creds.exists():
            auth.write_creds(auth.operator_creds, "kanade-operator", operator_permissions())
        return auth

    @classmethod
    def load(cls, root: Path) -> Authority:
        auth = cls(root)
        for name in ("ca.pem", "operator.jwt", "account.seed", "account.jwt", "backend.creds"):
            if not (root / name).is_file():
                raise AuthorityError(
                    f"{root / name} is missing: {root} is not a kanade trust directory "
                    "(create one with `kanade security init DIR`)"
                )
        return auth

    # --- credentials --------------------------------------------------------------------
    def mint_user(
        self,
        name: str,
        permissions: Permissions,
        *,
        public_key: str,
        expires: int | None = None,
    ) -> str:
        """A user JWT for ``public_key`` in the KANADE account (the holder keeps the seed)."""
        return nats_jwt.encode_jwt(
            self._identity("account", "account"),
            public_key,
            name,
            nats_jwt.user_claims(
                pub_allow=None if permissions.pub is None else list(permissions.pub),
                sub_allow=None if permissions.sub is None else list(permissions.sub),
                allow_responses=permissions.allow_responses,
            ),
            expires=expires,
        )

    def write_creds(self, path: Path, name: str, permissions: Permissions) -> Path:
        """A fresh key pair and its JWT, written as a 0600 creds file."""
        user = nats_jwt.new_identity("user")
        token = self.mint_user(name, permissions, public_key=user.public_key)
        write_private(path, nats_jwt.creds_text(token, user.seed))
        return path

    def issue_agent(self, pc_id: str, trust_dir: Path) -> str:
        """Credentials for one agent written into its trust dir (``agent.creds`` 0600,
        ``ca.pem``), as enrolment does but without the round trip — for agents this
        machine starts itself (``kanade up``, tests). Returns the user's public key (what
        a revocation names)."""
        private_dir(trust_dir)
        user = nats_jwt.new_identity("user")
        token = self.mint_user(
            f"agent:{pc_id}", agent_permissions(pc_id), public_key=user.public_key
        )
        write_private(trust_dir / AGENT_CREDS, nats_jwt.creds_text(token, user.seed))
        write_public(trust_dir / AGENT_CA, self.ca_file.read_bytes())
        return user.public_key

    # --- revocation ---------------------------------------------------------------------
    def revocations(self) -> dict[str, int]:
        claims = nats_jwt.decode_claims(self.account_jwt())
        revoked = claims.get("nats", {}).get("revocations") or {}
        return {str(k): int(v) for k, v in revoked.items()}

    def revoke(self, user_public_keys: list[str], *, at: int | None = None) -> str:
        """Refuse every JWT issued to these users up to now; returns the new account JWT
        (saved here; the caller pushes it to the running broker)."""
        instant = int(time.time()) + 1 if at is None else at
        revoked = self.revocations()
        for key in user_public_keys:
            revoked[key] = instant
        return self._write_account_jwt(revoked)

    # --- broker -------------------------------------------------------------------------
    def account_public_key(self) -> str:
        return self._identity("account", "account").public_key

    def account_jwt(self) -> str:
        return (self.root / "account.jwt").read_text().strip()

    def broker_security(self) -> BrokerSecurity:
        system = nats_jwt.decode_claims((self.root / "system.jwt").read_text().strip())
        return BrokerSecurity(
            operator_jwt_file=self.root / "operator.jwt",
            system_account=str(system["sub"]),
            account_jwt_files={
                str(system["sub"]): self.root / "system.jwt",
                self.account_public_key(): self.root / "account.jwt",
            },
            cert_file=self.root / "broker.pem",
            key_file=self.root / "broker.key",
        )

    def route_security(self, names: list[str] | None = None) -> RouteSecurity:
        """What cluster nodes present to each other (SPEC §9: routes are secured like
        clients): a certificate of this CA valid for ``names`` (default: loopback and this
        host) usable both ways, and a random route password; made on first use, reused
        after (every node of the cluster must hold the same files)."""
        cert, key = self.root / "route.pem", self.root / "route.key"
        if not cert.exists():
            pair = pki.issue_server_cert(
                self._ca(), names or pki.default_broker_names(), "kanade route",
                client_auth=True,
            )  # fmt: skip
            write_private(key, pair.key_pem)
            write_public(cert, pair.cert_pem)
        secret = self.root / "route.secret"
        if not secret.exists():
            write_private(secret, secrets.token_urlsafe(32) + "\n")
        return RouteSecurity(
            cert_file=cert, key_file=key, ca_file=self.ca_file, user=ROUTE_USER,
            password_file=secret,
        )  # fmt: skip

    @staticmethod
    def operator_inbox_prefix() -> str:
        return OPERATOR_INBOX_PREFIX

    # --- internals ----------------------------------------------------------------------
    def _ca(self) -> pki.CertPair:
        return pki.CertPair(
            (self.root / "ca.pem").read_bytes(), (self.root / "ca.key").read_bytes()
        )

    def _identity(self, name: str, kind: str) -> Identity:
        path = self.root / f"{name}.seed"
        if path.exists():
            try:
                return Identity.from_seed(path.read_text().strip())
            except Exception as exc:
                raise AuthorityError(f"{path}: not an nkey seed ({exc})") from None
        identity = nats_jwt.new_identity(kind)
        write_private(path, identity.seed)
        return identity

    def _write_account_jwt(self, revocations: dict[str, int]) -> str:
        operator = self._identity("operator", "operator")
        account = self._identity("account", "account")
        token = nats_jwt.encode_jwt(
            operator,
            account.public_key,
            ACCOUNT_NAME,
            nats_jwt.account_claims(jetstream=True, revocations=revocations),
        )
        write_public(self.root / "account.jwt", token)
        return token
