"""Building the authenticator from the settings, refusing unsafe configurations early."""

from __future__ import annotations

from datetime import timedelta

import structlog

from kanade.backend.services.auth.authenticator import AUTH_MODES, Authenticator
from kanade.backend.services.auth.ratelimit import LoginLimiter, LoginLimits
from kanade.backend.services.auth.tokens import secret_problem, ttl_problem
from kanade.backend.settings import Settings
from kanade.backend.store.database import Database

log = structlog.get_logger(__name__)

MIN_STATIC_TOKEN_CHARS = 16


class AuthConfigError(ValueError):
    pass


def check_auth_settings(settings: Settings) -> None:
    """Raise :class:`AuthConfigError` for a configuration that would start insecurely
    or not work at all (called before the server accepts a connection)."""
    mode = settings.auth_mode
    if mode not in AUTH_MODES:
        raise AuthConfigError(f"--auth must be one of {', '.join(AUTH_MODES)} (got {mode!r})")
    token = settings.auth_token
    if mode == "token" and not token:
        raise AuthConfigError("--auth token needs --auth-token-file or $KANADE_AUTH_TOKEN")
    if token and len(token) < MIN_STATIC_TOKEN_CHARS:
        raise AuthConfigError(f"the static token must be at least {MIN_STATIC_TOKEN_CHARS} chars")
    if mode == "jwt":
        problem = secret_problem(settings.jwt_secret)
        if problem:
            raise AuthConfigError(problem)
    problem = ttl_problem(timedelta(seconds=settings.token_ttl_s))
    if problem:
        raise AuthConfigError(f"--token-ttl: {problem}")
    try:
        login_limits(settings)
    except ValueError as exc:
        raise AuthConfigError(str(exc)) from None
    if settings.adhoc_run_role not in ("operator", "admin"):
        raise AuthConfigError(
            f"--adhoc-run-role must be operator or admin (got {settings.adhoc_run_role!r})"
        )


def login_limits(settings: Settings) -> LoginLimits:
    return LoginLimits(
        failures_per_user=settings.login_failures_per_user,
        failures_per_address=settings.login_failures_per_address,
        window_s=settings.login_window_s,
    )


def make_authenticator(settings: Settings, db: Database) -> Authenticator:
    check_auth_settings(settings)
    if settings.auth_mode == "disabled":
        log.warning(
            "AUTH IS DISABLED: anyone who can reach this port has admin rights "
            "(development only; start with --auth token or --auth jwt in production)",
            host=settings.host,
        )
    return Authenticator(
        settings.auth_mode,  # type: ignore[arg-type]  # checked above
        db,
        static_token=settings.auth_token,
        jwt_secret=settings.jwt_secret if settings.auth_mode == "jwt" else None,
        token_ttl=timedelta(seconds=settings.token_ttl_s),
        limiter=LoginLimiter(login_limits(settings)),
    )
