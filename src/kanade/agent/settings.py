"""Agent settings: built-in defaults < config file < command-line flags (SPEC §3.1)."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from kanade.agent.containment import MODES, Mode
from kanade.bus.credentials import AGENT_KEYRING, AGENT_TRUST_DIR
from kanade.core.agentconfig import DEFAULTS, validate_setting
from kanade.core.bounds import MAX_JITTER_S, finite_in
from kanade.core.ids import SLUG_RULE, is_slug, slugify_hostname

# A poll more often than every second would only load the machine; less often than hourly
# would leave a new machine waiting hours for its first run.
MIN_RECONCILE_POLL_S = 1.0
MAX_RECONCILE_POLL_S = 3600.0


def default_config_path() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "kanade" / "agent.yaml"
    if sys.platform == "darwin":
        return Path("/Library/Application Support/kanade/agent.yaml")
    return Path("/etc/kanade/agent.yaml")


def default_data_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "kanade" / "agent"
    if sys.platform == "darwin":
        return Path("/Library/Application Support/kanade/agent")
    return Path("/var/lib/kanade/agent")


def env_keyring() -> Path | None:
    value = os.environ.get("KANADE_AGENT_KEYRING")
    return Path(value) if value else None


@dataclass
class AgentSettings:
    pc_id: str = field(default_factory=lambda: slugify_hostname(socket.gethostname()))
    nats_urls: list[str] = field(default_factory=lambda: ["nats://127.0.0.1:4222"])
    data_dir: Path = field(default_factory=default_data_dir)
    # The broker credential and the CA this agent pins (agent.creds, ca.pem; written by
    # `kanade-agent enroll`). None = <data_dir>/trust.
    trust_dir: Path | None = None
    groups: list[str] = field(default_factory=list)
    heartbeat_interval: float = 30.0
    max_local_concurrent: int = 4
    # How often a per_pc / per_target schedule this agent applies polls, in seconds (SPEC
    # §3.6: once a minute; a site wanting a quicker first run on new machines, or a test,
    # shortens it). The backend's --reconcile-poll is the same setting for its schedules.
    reconcile_poll: float = 60.0
    max_output_bytes: int = 256 * 1024
    # Random 0..N s delay before the first connect, so a fleet rebooting together
    # does not check in at the same instant.
    startup_delay_max: float = 0.0
    # fsync every ledger/outbox write. Only the swarm simulator turns this off.
    durable: bool = True
    # Pull requests for commands: how long each stays open on the broker, and how
    # often the broker proves it is alive while idle. A swarm of thousands of
    # identities raises both to keep idle chatter down.
    pull_expires: float = 30.0
    pull_idle_heartbeat: float = 5.0
    log_level: str = "info"
    # The pinned command-signing keys (SPEC §8.2): $KANADE_AGENT_KEYRING, else
    # <trust dir>/keyring.json.
    keyring: Path | None = field(default_factory=env_keyring)
    # How a script's process tree is held (SPEC §3.4): auto = a cgroup v2 per script where
    # this host allows it (Linux), else process group + tracked descendants; "tracking"
    # forces the latter. Windows always uses a job object.
    containment: Mode = "auto"
    # Live output (SPEC §4.12), published only while someone watches the exec: the cap,
    # until the fleet's config (KV) says otherwise.
    live_output_bytes_per_s: int = DEFAULTS["live_output_bytes_per_s"]
    live_output_msgs_per_s: float = DEFAULTS["live_output_msgs_per_s"]

    @property
    def keyring_path(self) -> Path:
        return self.keyring if self.keyring is not None else self.trust_path / AGENT_KEYRING

    @property
    def trust_path(self) -> Path:
        return self.trust_dir if self.trust_dir is not None else self.data_dir / AGENT_TRUST_DIR

    def validate(self) -> None:
        if not is_slug(self.pc_id):
            raise ValueError(f"pc_id {self.pc_id!r} {SLUG_RULE}")
        for g in self.groups:
            if not is_slug(g):
                raise ValueError(f"group {g!r} {SLUG_RULE}")
        # The same bounds as the fleet-wide settings in KV (one rule, kanade.core.agentconfig).
        for key in (
            "heartbeat_interval",
            "max_local_concurrent",
            "max_output_bytes",
            "live_output_bytes_per_s",
            "live_output_msgs_per_s",
        ):
            validate_setting(key, getattr(self, key))
        if not finite_in(self.reconcile_poll, MIN_RECONCILE_POLL_S, MAX_RECONCILE_POLL_S):
            raise ValueError(
                f"reconcile_poll must be in {MIN_RECONCILE_POLL_S:g}..{MAX_RECONCILE_POLL_S:g}"
                " seconds"
            )
        if not finite_in(self.startup_delay_max, 0.0, MAX_JITTER_S):
            raise ValueError(f"startup_delay_max must be in 0..{MAX_JITTER_S:g} seconds")
        if self.containment not in MODES:
            raise ValueError(
                f"containment {self.containment!r} must be one of {', '.join(MODES)}"
            )


def load_settings(config: Path | None, overrides: dict[str, Any]) -> AgentSettings:
    """Read the config file (``--config`` > ``$KANADE_AGENT_CONFIG`` > OS default) and
    apply command-line ``overrides`` (None values are ignored)."""
    explicit = config or (
        Path(os.environ["KANADE_AGENT_CONFIG"]) if os.environ.get("KANADE_AGENT_CONFIG") else None
    )
    path = explicit or default_config_path()
    values: dict[str, Any] = {}
    if path.exists():
        import yaml  # only with a config file: most agents run from flags (SPEC §10.2 RSS)

        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: the agent config must be a mapping")
        known = {f.name for f in fields(AgentSettings)}
        unknown = sorted(set(loaded) - known)
        if unknown:
            raise ValueError(f"{path}: unknown setting(s): {', '.join(unknown)}")
        values.update(loaded)
    elif explicit is not None:
        raise ValueError(f"config file {path} does not exist")
    values.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(values.get("nats_urls"), str):
        values["nats_urls"] = [u.strip() for u in values["nats_urls"].split(",") if u.strip()]
    for key in ("data_dir", "trust_dir", "keyring"):
        if values.get(key) is not None:
            values[key] = Path(values[key])
    settings = AgentSettings(**values)
    settings.validate()
    return settings
