"""The slug check every control use case applies to the ids it is given (SPEC §2.2)."""

from __future__ import annotations

from kanade.backend.errors import Invalid
from kanade.core.ids import SLUG_RULE, is_slug


def require_slug(value: str, what: str) -> str:
    """``value`` itself, or :class:`Invalid` naming ``what`` and the slug rule."""
    if not is_slug(value):
        raise Invalid.at(what, f"{value!r} {SLUG_RULE}", message=f"invalid {what}")
    return value
