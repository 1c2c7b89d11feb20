"""Webhook configuration (kanade.core.notify.config): every bad field refused by name;
secrets never shown."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from kanade.core.notify.config import WebhookPatch, WebhookSpec, mask_url

GOOD: dict[str, Any] = {"id": "ops", "url": "https://hooks.example.com/in/abc123"}


def _errors(**fields: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        WebhookSpec.model_validate(GOOD | fields)
    return [(".".join(str(p) for p in e["loc"]), str(e["msg"])) for e in info.value.errors()]


def test_a_webhook_has_useful_defaults() -> None:
    w = WebhookSpec.model_validate(GOOD)
    assert w.kind == "generic" and w.enabled and w.secret is None
    assert "exec.failed" in w.events and "test" not in w.events
    assert w.offline_after.total_seconds() == 600


@pytest.mark.parametrize(
    ("fields", "path", "reason"),
    [
        ({"id": "has space"}, "id", "must be 1-128"),
        ({"url": "ftp://x.example/"}, "url", "http:// or https://"),
        ({"url": "https://"}, "url", "with a host"),
        ({"url": "https://u:p@x.example/"}, "url", "user or password"),
        ({"url": "https://x.example/" + "a" * 3000}, "url", "at most 2048"),
        ({"url": "https://x.example:99999/"}, "url", "is not a URL"),
        ({"kind": "slack", "url": "http://hooks.slack.com/x"}, "url", "https://"),
        ({"kind": "slack", "secret": "s" * 32}, "secret", "not signed"),
        ({"kind": "teams"}, "kind", "'generic' or 'slack'"),
        ({"secret": "short"}, "secret", "16-256"),
        ({"events": ["exec.failed", "nope"]}, "events", "unknown event 'nope'"),
        ({"events": []}, "events", "at least one event"),
        ({"events": ["test"]}, "events", "unknown event 'test'"),
        ({"offline_after": "10s"}, "offline_after", "between 1m and 30d"),
        ({"offline_after": 600}, "offline_after", "bare number"),
        ({"colour": "red"}, "colour", "Extra inputs"),
    ],
)
def test_each_bad_field_is_refused_by_name(fields: dict[str, Any], path: str, reason: str) -> None:
    errors = _errors(**fields)
    assert any(p == path and reason in msg for p, msg in errors), errors


def test_repeated_events_are_kept_once() -> None:
    w = WebhookSpec.model_validate(GOOD | {"events": ["agent.offline", "agent.offline"]})
    assert w.events == ["agent.offline"]


def test_a_patch_names_only_what_changes() -> None:
    p = WebhookPatch.model_validate({"secret": None})
    assert p.model_fields_set == {"secret"} and p.secret is None
    with pytest.raises(ValidationError):
        WebhookPatch.model_validate({"id": "renamed"})


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T000/B000/XXXXsecretZZZZ", "https://hooks.slack.com/…ZZZZ"),
        ("http://127.0.0.1:8099/hook", "http://127.0.0.1:8099/…"),
        ("https://example.com", "https://example.com"),
        ("https://example.com/", "https://example.com"),
    ],
)
def test_a_url_is_shown_masked(url: str, shown: str) -> None:
    assert mask_url(url) == shown
