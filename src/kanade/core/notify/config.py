"""A webhook's configuration: where notifications go, which events, and its secret.

:class:`WebhookSpec` is the strict writer (API bodies, the CLI): every bad field is
refused with its path. Secrets — the HMAC key of a generic webhook and the whole URL of a
Slack one (Slack's URL *is* its credential) — are stored whole but shown only through
:func:`mask_url` and ``has_secret``: an API answer never echoes one back.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from kanade.core.durations import Duration
from kanade.core.ids import SLUG_RULE, is_slug
from kanade.core.notify.events import SUBSCRIBABLE, EventKind

WebhookKind = Literal["generic", "slack"]
KINDS: Final[tuple[str, ...]] = ("generic", "slack")

MAX_URL: Final = 2048
MIN_SECRET: Final = 16
MAX_SECRET: Final = 256
MIN_OFFLINE: Final = timedelta(minutes=1)
MAX_OFFLINE: Final = timedelta(days=30)
DEFAULT_OFFLINE: Final = timedelta(minutes=10)
MAX_WEBHOOKS: Final = 100
"""Webhooks per deployment: each event is fanned out to every one of them."""


def check_url(url: str, kind: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host (https for Slack)."""
    if len(url) > MAX_URL:
        raise ValueError(f"must be at most {MAX_URL} characters")
    if any(c.isspace() for c in url):
        raise ValueError("must not contain spaces")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a bad port
    except ValueError as exc:
        raise ValueError(f"is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError("must not carry a user or password (use a secret for signing)")
    if kind == "slack" and parts.scheme != "https":
        raise ValueError("a Slack webhook URL is https://")
    return url


def check_events(events: list[str]) -> list[str]:
    known = [k.value for k in SUBSCRIBABLE]
    out: list[str] = []
    for e in events:
        if e not in known:
            raise ValueError(f"unknown event {e!r}; one of {', '.join(known)}")
        if e not in out:
            out.append(e)
    if not out:
        raise ValueError("name at least one event")
    return out


def check_secret(secret: str) -> str:
    if not MIN_SECRET <= len(secret) <= MAX_SECRET:
        raise ValueError(f"must be {MIN_SECRET}-{MAX_SECRET} characters")
    if not secret.isprintable():
        raise ValueError("must be printable characters")
    return secret


def check_offline(value: timedelta) -> timedelta:
    if not MIN_OFFLINE <= value <= MAX_OFFLINE:
        raise ValueError("must be between 1m and 30d")
    return value


class WebhookSpec(BaseModel):
    """A new webhook, as an operator writes it (``POST /api/notify/webhooks``)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="a name: " + SLUG_RULE)
    kind: WebhookKind = "generic"
    url: str = Field(description="where to POST (a Slack URL is kept secret like a key)")
    secret: str | None = Field(
        default=None,
        description="HMAC-SHA256 key of a generic webhook (X-Kanade-Signature); never shown",
    )
    events: list[str] = Field(
        default_factory=lambda: [k.value for k in SUBSCRIBABLE],
        description="event kinds to send: " + ", ".join(k.value for k in SUBSCRIBABLE),
    )
    enabled: bool = True
    offline_after: Duration = Field(
        default=DEFAULT_OFFLINE, description="agent.offline: silence longer than this (1m-30d)"
    )

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not is_slug(v):
            raise ValueError(SLUG_RULE)
        return v

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str]) -> list[str]:
        return check_events(v)

    # Field validators, not a model validator: an error then names its field. ``kind`` is
    # declared first, so it is known (in ``info.data``) when ``url`` and ``secret`` are checked.
    @field_validator("url")
    @classmethod
    def _url(cls, v: str, info: ValidationInfo) -> str:
        return check_url(v, str(info.data.get("kind", "generic")))

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("kind") == "slack":
            raise ValueError("a Slack webhook is not signed (its URL is the secret)")
        return None if v is None else check_secret(v)

    @field_validator("offline_after")
    @classmethod
    def _offline(cls, v: timedelta) -> timedelta:
        return check_offline(v)


class WebhookPatch(BaseModel):
    """A change to a webhook (``PATCH``): only the fields given change; ``secret: null``
    removes the signing key."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    secret: str | None = None
    events: list[str] | None = None
    enabled: bool | None = None
    offline_after: Duration | None = None

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else check_events(v)

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: str | None) -> str | None:
        return None if v is None else check_secret(v)

    @field_validator("offline_after")
    @classmethod
    def _offline(cls, v: timedelta | None) -> timedelta | None:
        return None if v is None else check_offline(v)


def mask_url(url: str) -> str:
    """What may be shown of a webhook URL: scheme, host and port, and the last four
    characters — enough to tell two apart, never enough to use one."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "…"
    rest = url.split(parts.netloc, 1)[-1] if parts.netloc else ""
    tail = f"/…{rest[-4:]}" if len(rest) > 8 else ("/…" if rest not in ("", "/") else "")
    return f"{parts.scheme}://{host}{port}{tail}"


def subscribes(events: list[str], kind: str) -> bool:
    return kind in events or kind == EventKind.TEST


__all__ = [
    "DEFAULT_OFFLINE",
    "KINDS",
    "MAX_WEBHOOKS",
    "WebhookKind",
    "WebhookPatch",
    "WebhookSpec",
    "check_events",
    "check_offline",
    "check_secret",
    "check_url",
    "mask_url",
    "subscribes",
]
