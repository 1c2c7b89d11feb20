"""The backend's settings (from the command line, or built directly by tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kanade.backend.store.database import database_url
from kanade.core.retention import DEFAULT_POLICY, Policy


def split_urls(urls: str) -> list[str]:
    """``"tls://a:4222, tls://b:4222"`` -> both URLs (blanks dropped)."""
    return [u.strip() for u in urls.split(",") if u.strip()]


@dataclass(frozen=True)
class Settings:
    # The broker: one URL, or every node of a cluster comma separated (the backend fails
    # over between them, SPEC §9).
    nats_url: str
    db_url: str
    # The deployment's trust directory (kanade.security.authority): the backend connects
    # with its backend.creds and pins its ca.pem, mints agent credentials at enrolment and
    # pushes revocations with it (SPEC §8.1). Required: no anonymous connection, ever.
    authority_dir: Path
    host: str = "127.0.0.1"
    http_port: int = 8080
    log_level: str = "info"
    # Projector: messages per transaction at most (a batch is whatever piled up
    # while the previous one committed, so it is 1 when idle and large under load).
    # Largest batch per transaction. Under a backlog a batch grows while the previous
    # one commits; bigger batches mean fewer commits and fewer counter recounts.
    projector_batch: int = 5000
    # Heartbeats are coalesced per pc for this long before one batched write.
    heartbeat_flush_s: float = 0.2
    # Budgets (SPEC §4.9): None = no cap on requested timeouts.
    max_timeout_s: float | None = None
    max_output_bytes: int = 256 * 1024
    # Auth (SPEC §4.10): "disabled" (development only), "token" or "jwt".
    auth_mode: str = "disabled"
    auth_token: str | None = None
    jwt_secret: str | None = None
    token_ttl_s: float = 12 * 3600  # at most 7 days (services.auth.tokens.MAX_TTL)
    # Failed logins (SPEC §8.3): past this many in login_window_s, per user or per client
    # address, further attempts get 429 + Retry-After until the window frees up.
    login_failures_per_user: int = 5
    login_failures_per_address: int = 20
    login_window_s: float = 300.0
    # The least role that may run ad-hoc scripts (POST /api/run): "admin" keeps operators
    # to catalog jobs, whose approval requirement they cannot lower (SPEC §4.8).
    adhoc_run_role: str = "operator"
    # How often the reaper closes overdue rows and expires stale execs (SPEC §4.3).
    reaper_interval_s: float = 10.0
    # How long past an exec's deadline an expected pc that never started is closed as
    # no_result (SPEC §4.3: agent clocks may run behind; tests shorten it).
    no_result_grace_s: float = 120.0
    # Central scheduler (SPEC §4.4): off = this process never competes for the lease.
    scheduler: bool = True
    # How often per_pc / per_target schedules are reconciled (the spec's 1 minute;
    # tests shorten it).
    reconcile_poll_s: float = 60.0
    # The scheduler lease's TTL (a standby takes over after this long of silence) and
    # how late a running scheduler may decide an occurrence and still count it on time
    # (catchup beyond, and for any occurrence due before the scheduler came up).
    scheduler_lease_ttl_s: float = 10.0
    # The lease of the reaper, rollout runner, approval sweeper, retention and notifications
    # across replicas (SPEC §9): a standby takes them over after this long without renewal.
    deciders_lease_ttl_s: float = 10.0
    scheduler_late_tolerance_s: float = 60.0
    # Approvals (SPEC §4.8): a request not decided within this long is rejected
    # ("expired"); the sweeper looks every approval_sweep_s. Rollout waves (§4.7) are
    # checked every rollout_interval_s.
    approval_ttl_s: float = 24 * 3600
    approval_sweep_s: float = 5.0
    rollout_interval_s: float = 0.5
    # Request bodies (SPEC §8.3): larger ones are answered 413 before they are read. Script
    # objects (PUT /api/scripts/…) are the one place a big body belongs.
    max_body_bytes: int = 4 * 1024 * 1024
    max_script_bytes: int = 16 * 1024 * 1024
    # Agent releases (POST /api/agent-releases, admin): the single-file agent is ~7 MB.
    max_release_bytes: int = 64 * 1024 * 1024
    # Notifications (docs/notifications.md): how often the detector looks for new facts,
    # how far back it reads again after a restart or a change of leader, and how failed
    # deliveries are retried (exponential from the base, capped, at most so many attempts);
    # each request's timeout; how long events and finished deliveries are kept.
    notify_scan_s: float = 5.0
    notify_lookback_s: float = 3600.0
    notify_retry_base_s: float = 5.0
    notify_retry_max_s: float = 3600.0
    notify_max_attempts: int = 12
    notify_timeout_s: float = 10.0
    notify_concurrency: int = 8
    notify_keep_s: float = 7 * 86400.0
    # Retention (SPEC §4.12): age and count limits per table, the pass interval and the
    # batch size (kanade.core.retention; `--retain FIELD=VALUE`, docs/retention.md).
    retention: Policy = DEFAULT_POLICY
    # The broker URLs enrolled agents are told to use (default: this backend's nats_url).
    agent_nats_urls: tuple[str, ...] = ()
    # Copies the broker keeps of each stream and bucket: None = as the cluster warrants
    # (3 on a cluster of 3 or more, else 1; never fewer than a stream has), else exactly.
    stream_replicas: int | None = None

    @property
    def nats_urls(self) -> list[str]:
        """Every broker URL of ``nats_url`` (comma separated)."""
        return split_urls(self.nats_url)

    def agent_broker_urls(self) -> list[str]:
        return list(self.agent_nats_urls) or self.nats_urls
    # The command-signing key directory (SPEC §8.2); None: $KANADE_SIGNING_KEYS, else
    # <dir of the DB file>/keys. Created with a fresh key when empty.
    signing_keys_dir: str | None = None

    @classmethod
    def from_db_arg(
        cls, *, nats_url: str, db: str, authority_dir: Path, **kwargs: object
    ) -> Settings:
        """``db`` is a file path (SQLite) or a full SQLAlchemy URL."""
        return cls(
            nats_url=nats_url,
            db_url=database_url(db),
            authority_dir=authority_dir,
            **kwargs,  # type: ignore[arg-type]
        )
