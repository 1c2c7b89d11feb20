"""Benchmarks run secured, exactly like a deployment (SPEC §8, §10.2: security costs little).

Every broker a benchmark starts has an :class:`Authority` (JWT auth + TLS), every backend
gets ``--authority`` and ``--signing-keys``, the swarm connects with a credential of its
own, and the benchmark's own probes connect with the backend's credential (they read
results and command subjects no narrower identity may read; the broker is throw-away).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from kanade.bus.broker import EmbeddedBroker
from kanade.bus.credentials import AGENT_CA, AGENT_CREDS, AGENT_KEYRING, BusCredentials
from kanade.security.authority import Authority
from kanade.security.files import private_dir, write_public
from kanade.security.permissions import swarm_permissions
from kanade.security.signing_keys import ensure_key_dir, write_keyring_file

__all__ = [
    "SECURITY_DIR",
    "SIGNING_KEYS_DIR",
    "SWARM_TRUST_DIR",
    "backend_args",
    "probe_credentials",
    "secure_broker",
    "swarm_args",
    "write_swarm_trust",
]

# The layout ``kanade up`` uses under its data dir (cli/supervisor.py).
SECURITY_DIR: Final = "security"
SIGNING_KEYS_DIR: Final = "keys"
# The swarm's credential and CA go in <swarm data dir>/trust, as an agent's do.
SWARM_TRUST_DIR: Final = "trust"


def secure_broker(base: Path) -> tuple[EmbeddedBroker, Authority]:
    """A broker under ``base`` with its own trust root in ``base/security`` (not started)."""
    authority = Authority.create(base / SECURITY_DIR)
    return EmbeddedBroker(base / "nats", security=authority.broker_security()), authority


def backend_args(authority: Authority, base: Path) -> list[str]:
    """``kanade-backend run`` flags for a backend of this authority (keys under ``base``)."""
    return ["--authority", str(authority.root), "--signing-keys", str(base / SIGNING_KEYS_DIR)]


def probe_credentials(authority: Authority) -> BusCredentials:
    """What a benchmark's own NATS client connects with."""
    return BusCredentials(authority.backend_creds, authority.ca_file)


def write_swarm_trust(authority: Authority, swarm_data_dir: Path, keys_dir: Path) -> Path:
    """The swarm's credential (every agent right for any pc_id: bench only, never issued by
    ``kanade up`` or enrolment), the CA and the keyring of the signing keys in
    ``keys_dir`` (as each local agent pins them), where the swarm looks for them."""
    trust = private_dir(swarm_data_dir / SWARM_TRUST_DIR)
    authority.write_creds(trust / AGENT_CREDS, "bench-swarm", swarm_permissions())
    write_public(trust / AGENT_CA, authority.ca_file.read_bytes())
    keys, _ = ensure_key_dir(keys_dir)
    write_keyring_file(trust / AGENT_KEYRING, keys.keyring())
    return trust


def swarm_args(trust: Path) -> list[str]:
    """``kanade-agent swarm`` flags for what :func:`write_swarm_trust` wrote."""
    return [
        "--creds",
        str(trust / AGENT_CREDS),
        "--ca",
        str(trust / AGENT_CA),
        "--keyring",
        str(trust / AGENT_KEYRING),
    ]
