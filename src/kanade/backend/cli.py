"""``kanade-backend``: run the backend process (HTTP API + projectors)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import structlog
import typer

from kanade.backend.services.auth.setup import AuthConfigError
from kanade.backend.settings import Settings, split_urls
from kanade.backend.users_cli import users_cli
from kanade.bus.credentials import CredentialsError
from kanade.core.bounds import MAX_INLINE_OUTPUT_BYTES, MAX_TIMEOUT_S
from kanade.core.durations import parse_duration
from kanade.core.releases import MAX_ARTEFACT_BYTES
from kanade.core.retention import RetentionError, parse_overrides
from kanade.security.authority import AuthorityError
from kanade.security.signing_keys import SigningKeysError

if TYPE_CHECKING:
    import uvicorn

AUTH_TOKEN_ENV = "KANADE_AUTH_TOKEN"
JWT_SECRET_ENV = "KANADE_JWT_SECRET"

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="The kanade backend.")


def configure_logging(level: str) -> None:
    """One structlog line per event, for our loggers and the libraries' (uvicorn, nats)."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.dev.ConsoleRenderer(
                    colors=False, exception_formatter=structlog.dev.plain_traceback
                ),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def _serve(config: uvicorn.Config) -> bool:
    """Run uvicorn until SIGTERM/SIGINT; whether it had started."""
    import uvicorn

    class _Server(uvicorn.Server):
        """uvicorn re-raises a handled SIGTERM/SIGINT once shutdown is done, so the process
        would die of the signal (status -15). A requested stop that completed cleanly is a
        success for a supervisor (``kanade up``, systemd): forget the signal, exit 0."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    server = _Server(config)
    server.run()
    return bool(server.started)


def _read_secret(path: Path, option: str) -> str:
    """A secret from a file: its first line, stripped. A secret passed as an argument would be
    readable by every local user in ``/proc/<pid>/cmdline``; a file can be 0600."""
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint=option) from None
    if not value:
        raise typer.BadParameter(f"{path} is empty", param_hint=option)
    return value


def _positive(text: str, option: str) -> float:
    """A duration option (``30s``, ``1h``) in seconds, longer than zero."""
    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None
    if seconds <= 0:
        raise typer.BadParameter("must be longer than 0s", param_hint=option)
    return seconds


@cli.command()
def run(
    nats_url: list[str] = typer.Option(
        ["nats://127.0.0.1:4222"],
        "--nats-url",
        help="broker URL; a cluster: every node's (repeatable or comma separated), failed over",
    ),
    authority: Path | None = typer.Option(
        None,
        "--authority",
        envvar="KANADE_AUTHORITY_DIR",
        help="the deployment's trust directory (backend.creds, ca.pem, enrolment); required",
    ),
    db: str = typer.Option(
        "kanade.db",
        "--db",
        envvar="KANADE_DB",
        help="SQLite file path, or a full SQLAlchemy URL (PostgreSQL; with a password, pass "
        "it in $KANADE_DB: every local user can read a command line)",
    ),
    http_port: int = typer.Option(8080, "--http-port", help="HTTP port"),
    host: str = typer.Option("127.0.0.1", "--host", help="HTTP bind address"),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error"),
    max_timeout: float = typer.Option(
        0.0,
        "--max-timeout",
        min=0.0,
        max=MAX_TIMEOUT_S,
        help="cap on job timeouts in seconds (0 = no cap below the 7-day limit)",
    ),
    max_output_bytes: int = typer.Option(
        256 * 1024,
        "--max-output-bytes",
        min=1,
        max=MAX_INLINE_OUTPUT_BYTES,
        help="cap on each result's inline stdout/stderr; the rest goes to the object store",
    ),
    token_ttl: str = typer.Option(
        "12h", "--token-ttl", help="session token lifetime (jwt mode; 1m to 7d)"
    ),
    login_failures_per_user: int = typer.Option(
        5, "--login-failures-per-user", min=1, help="failed logins per user per window"
    ),
    login_failures_per_address: int = typer.Option(
        20, "--login-failures-per-address", min=1, help="failed logins per address per window"
    ),
    login_window: str = typer.Option(
        "5m", "--login-window", help="window of the failed-login limits (then 429 Retry-After)"
    ),
    adhoc_run_role: str = typer.Option(
        "operator",
        "--adhoc-run-role",
        envvar="KANADE_ADHOC_RUN_ROLE",
        help="least role allowed to run ad-hoc scripts (operator or admin)",
    ),
    auth: str = typer.Option(
        "disabled", "--auth", envvar="KANADE_AUTH", help="disabled (dev only), token or jwt"
    ),
    # Secrets come from a file or the environment, never from an argument: every local
    # user can read a process's arguments (/proc/<pid>/cmdline).
    auth_token_file: Path | None = typer.Option(
        None,
        "--auth-token-file",
        envvar="KANADE_AUTH_TOKEN_FILE",
        help=f"read the static bearer token (admin) from this file (or set ${AUTH_TOKEN_ENV})",
    ),
    jwt_secret_file: Path | None = typer.Option(
        None,
        "--jwt-secret-file",
        envvar="KANADE_JWT_SECRET_FILE",
        help=f"read the HS256 signing secret (jwt mode) from this file (or set ${JWT_SECRET_ENV})",
    ),
    scheduler: bool = typer.Option(
        True, "--scheduler/--no-scheduler", help="compete for the central scheduler's lease"
    ),
    reconcile_poll: float = typer.Option(
        60.0, "--reconcile-poll", min=0.5, help="seconds between per_pc/per_target polls"
    ),
    lease_ttl: float = typer.Option(
        10.0,
        "--lease-ttl",
        min=1.0,
        help="TTL of the scheduler's and the deciders' leases in seconds (failover time)",
    ),
    late_tolerance: float = typer.Option(
        60.0,
        "--late-tolerance",
        min=0.0,
        help="seconds late a running scheduler's fire is still on time (never across a restart)",
    ),
    approval_ttl: str = typer.Option(
        "24h", "--approval-ttl", help="approval requests expire after this (e.g. 24h, 30m)"
    ),
    reaper_interval: float = typer.Option(
        10.0, "--reaper-interval", min=0.1, max=3600.0, help="seconds between reaper passes"
    ),
    no_result_grace: str = typer.Option(
        "2m",
        "--no-result-grace",
        help="how long past an exec's deadline a pc that never started is closed as no_result",
    ),
    agent_nats_url: list[str] = typer.Option(
        [],
        "--agent-nats-url",
        envvar="KANADE_AGENT_NATS_URLS",
        help="broker URL enrolled agents are told to use (repeatable; default --nats-url)",
    ),
    stream_replicas: int = typer.Option(
        0,
        "--stream-replicas",
        min=0,
        max=5,
        help="copies the broker keeps of each stream (0 = 3 on a cluster of 3+, else 1)",
    ),
    max_body_bytes: int = typer.Option(
        4 * 1024 * 1024,
        "--max-body-bytes",
        min=1024,
        help="largest request body accepted (413 above it)",
    ),
    max_script_bytes: int = typer.Option(
        16 * 1024 * 1024,
        "--max-script-bytes",
        min=1024,
        help="largest script object accepted by PUT /api/scripts/NAME/VERSION",
    ),
    max_release_bytes: int = typer.Option(
        64 * 1024 * 1024,
        "--max-release-bytes",
        min=1024 * 1024,
        max=MAX_ARTEFACT_BYTES,
        help="largest agent release accepted by POST /api/agent-releases",
    ),
    notify_scan: float = typer.Option(
        5.0, "--notify-scan", min=0.1, max=3600.0, help="seconds between notification scans"
    ),
    notify_retry: str = typer.Option(
        "5s", "--notify-retry", help="wait after a failed webhook delivery; doubles each time"
    ),
    notify_retry_max: str = typer.Option(
        "1h", "--notify-retry-max", help="longest wait between two delivery attempts"
    ),
    notify_attempts: int = typer.Option(
        12, "--notify-attempts", min=1, max=100, help="attempts before a delivery is failed"
    ),
    notify_timeout: str = typer.Option(
        "10s", "--notify-timeout", help="time a webhook has to answer one request"
    ),
    retain: list[str] = typer.Option(
        [],
        "--retain",
        metavar="FIELD=VALUE",
        help="a retention limit (repeatable): results.max_age=60d, audit.max_rows=off, "
        "interval=1m, batch=2000 … (docs/retention.md)",
    ),
    signing_keys: Path | None = typer.Option(
        None,
        "--signing-keys",
        envvar="KANADE_SIGNING_KEYS",
        help="command-signing key directory (default: <dir of the DB>/keys; created if empty)",
    ),
) -> None:
    """Serve the API and run the projectors until SIGTERM/SIGINT."""
    configure_logging(log_level)
    if authority is None:
        typer.echo(
            "kanade-backend: --authority DIR (or $KANADE_AUTHORITY_DIR) is required: the "
            "deployment's trust directory holding backend.creds and ca.pem (`kanade up` "
            "makes one in <data_dir>/security). The backend never connects anonymously.",
            err=True,
        )
        raise typer.Exit(code=2)
    try:
        approval_ttl_s = parse_duration(approval_ttl).total_seconds()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--approval-ttl") from None
    if approval_ttl_s <= 0:
        raise typer.BadParameter("must be longer than 0s", param_hint="--approval-ttl")
    try:
        no_result_grace_s = parse_duration(no_result_grace).total_seconds()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--no-result-grace") from None
    try:
        token_ttl_s = parse_duration(token_ttl).total_seconds()
        login_window_s = parse_duration(login_window).total_seconds()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--token-ttl/--login-window") from None
    retry_s = _positive(notify_retry, "--notify-retry")
    retry_max_s = _positive(notify_retry_max, "--notify-retry-max")
    timeout_s = _positive(notify_timeout, "--notify-timeout")
    if retry_max_s < retry_s:
        raise typer.BadParameter("must be at least --notify-retry", param_hint="--notify-retry-max")
    try:
        retention = parse_overrides(retain)
    except RetentionError as exc:
        raise typer.BadParameter(str(exc), param_hint="--retain") from None
    auth_token = os.environ.get(AUTH_TOKEN_ENV) or None
    jwt_secret = os.environ.get(JWT_SECRET_ENV) or None
    if auth_token_file is not None:
        auth_token = _read_secret(auth_token_file, "--auth-token-file")
    if jwt_secret_file is not None:
        jwt_secret = _read_secret(jwt_secret_file, "--jwt-secret-file")
    urls = [u for arg in nats_url for u in split_urls(arg)]
    if not urls:
        raise typer.BadParameter("needs at least one broker URL", param_hint="--nats-url")
    from kanade.backend.store.database import password_in_argv

    if password_in_argv(db, sys.argv):
        typer.echo(
            "kanade-backend: warning: the database password is on the command line, where "
            "every local user can read it; pass the URL in $KANADE_DB instead",
            err=True,
        )
    settings = Settings.from_db_arg(
        nats_url=",".join(urls),
        db=db,
        authority_dir=authority,
        host=host,
        http_port=http_port,
        log_level=log_level,
        max_timeout_s=max_timeout or None,
        max_output_bytes=max_output_bytes,
        token_ttl_s=token_ttl_s,
        login_failures_per_user=login_failures_per_user,
        login_failures_per_address=login_failures_per_address,
        login_window_s=login_window_s,
        adhoc_run_role=adhoc_run_role,
        auth_mode=auth,
        auth_token=auth_token,
        jwt_secret=jwt_secret,
        scheduler=scheduler,
        reconcile_poll_s=reconcile_poll,
        scheduler_lease_ttl_s=lease_ttl,
        deciders_lease_ttl_s=lease_ttl,
        scheduler_late_tolerance_s=late_tolerance,
        approval_ttl_s=approval_ttl_s,
        approval_sweep_s=min(5.0, max(0.2, approval_ttl_s / 4)),
        reaper_interval_s=reaper_interval,
        no_result_grace_s=no_result_grace_s,
        agent_nats_urls=tuple(u for arg in agent_nats_url for u in arg.split(",") if u),
        signing_keys_dir=None if signing_keys is None else str(signing_keys),
        stream_replicas=stream_replicas or None,
        max_body_bytes=max_body_bytes,
        max_script_bytes=max_script_bytes,
        max_release_bytes=max_release_bytes,
        notify_scan_s=notify_scan,
        notify_retry_base_s=retry_s,
        notify_retry_max_s=retry_max_s,
        notify_max_attempts=notify_attempts,
        notify_timeout_s=timeout_s,
        retention=retention,
    )
    # Imported here, not at the top: the app (FastAPI, every route and service) is most of
    # the process's start-up time, and `kanade-backend user add` (how every deployment, `kanade
    # up` and many tests bootstrap users) or a refused option never needs it.
    import uvicorn

    from kanade.backend.app import create_app

    # uvicorn installs SIGTERM/SIGINT handlers: on either it stops accepting, lets
    # in-flight requests finish, then runs the lifespan shutdown (workers, bus, DB).
    try:
        api = create_app(settings)
    except (AuthConfigError, AuthorityError, CredentialsError, SigningKeysError) as exc:
        typer.echo(f"kanade-backend: {exc}", err=True)
        raise typer.Exit(code=2) from None
    config = uvicorn.Config(
        api,
        host=host,
        port=http_port,
        log_config=None,
        access_log=log_level.lower() == "debug",
        timeout_graceful_shutdown=10,
    )
    if not _serve(config):  # e.g. port in use, DB unreadable: say so with the exit code
        raise typer.Exit(code=3)


cli.add_typer(users_cli, name="user")


@cli.callback()
def _root() -> None:
    """kanade-backend: REST API, projectors and the central scheduler."""
    # Everything a backend command creates (the SQLite database with all output and password
    # hashes, its WAL) is for its owner only (SPEC §8.3). The backend runs no scripts, so a
    # strict umask cannot leak into anything else.
    os.umask(0o077)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
