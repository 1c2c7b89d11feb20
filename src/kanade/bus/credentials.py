"""How a client proves who it is to the broker and checks the broker is ours (SPEC §8.1).

A NATS creds file (user JWT + nkey seed, minted by ``kanade.security.authority``) and the
deployment's CA certificate. Paths only: the seed is read by nats-py on each (re)connect
and never passed on a command line.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kanade.core.subjects import agent_inbox_prefix

__all__ = [
    "AGENT_CA",
    "AGENT_CREDS",
    "AGENT_KEYRING",
    "AGENT_TRUST_DIR",
    "CA_ENV",
    "CREDS_ENV",
    "BusCredentials",
    "CredentialsError",
]

CREDS_ENV: Final = "KANADE_NATS_CREDS"
CA_ENV: Final = "KANADE_NATS_CA"
# An agent's trust dir (``<agent data_dir>/trust``, 0700) holds its credential and the CA
# it pins (SPEC §8.1), written by enrolment (or by ``kanade up`` for its local agents).
AGENT_TRUST_DIR: Final = "trust"
AGENT_CREDS: Final = "agent.creds"
AGENT_CA: Final = "ca.pem"
AGENT_KEYRING: Final = "keyring.json"  # the command-signing keys it obeys (SPEC §8.2)


class CredentialsError(ValueError):
    """A creds or CA file is missing or unreadable."""


@dataclass(frozen=True)
class BusCredentials:
    creds_file: Path
    ca_file: Path
    inbox_prefix: str | None = None
    """Set for restricted identities: their replies arrive under this prefix only."""

    @classmethod
    def from_env(cls, *, inbox_prefix: str | None = None) -> BusCredentials | None:
        """``$KANADE_NATS_CREDS`` + ``$KANADE_NATS_CA``; None when neither is set."""
        creds, ca = os.environ.get(CREDS_ENV), os.environ.get(CA_ENV)
        if not creds and not ca:
            return None
        if not creds or not ca:
            missing = CREDS_ENV if not creds else CA_ENV
            raise CredentialsError(
                f"${missing} is not set (both {CREDS_ENV} and {CA_ENV} are needed)"
            )
        return cls(Path(creds), Path(ca), inbox_prefix)

    @classmethod
    def for_agent(cls, trust_dir: Path, pc_id: str) -> BusCredentials:
        """An agent's identity, from its trust dir; replies under its own inbox prefix
        (the only ``_INBOX`` subjects its permissions let it read)."""
        return cls(trust_dir / AGENT_CREDS, trust_dir / AGENT_CA, agent_inbox_prefix(pc_id))

    def check(self) -> None:
        """Fail early with the file's path, instead of a TLS/auth error from deep inside."""
        for what, path in (("creds", self.creds_file), ("CA", self.ca_file)):
            if not path.is_file():
                raise CredentialsError(f"NATS {what} file {path} does not exist")
            if not os.access(path, os.R_OK):
                raise CredentialsError(f"NATS {what} file {path} is not readable by this user")

    def ssl_context(self) -> ssl.SSLContext:
        """TLS that trusts only the deployment's CA (not the system store) and checks
        the broker's name against its certificate."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def connect_options(self) -> dict[str, Any]:
        """Options for ``nats.aio.client.Client.connect``."""
        self.check()
        opts: dict[str, Any] = {
            "user_credentials": str(self.creds_file),
            "tls": self.ssl_context(),
        }
        if self.inbox_prefix:
            opts["inbox_prefix"] = self.inbox_prefix
        return opts
