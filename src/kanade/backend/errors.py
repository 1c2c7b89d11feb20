"""The backend's domain errors: what went wrong, in the service's words — never an HTTP status.

Services, the catalogs and the store raise these; :mod:`kanade.backend.api.errors` alone maps
each class to a status code (the one table), so a use case called from a worker or a CLI
reads the same as one called from a route.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a backend use case raises on purpose.

    ``message`` is one line for a person; ``extra`` are machine-readable details that the API
    puts beside it in the JSON body (e.g. ``errors: [{path, reason}]``).
    """

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.extra}


class Invalid(DomainError):
    """The request itself is wrong (a field, a combination, an unknown reference)."""

    @classmethod
    def at(cls, path: str, reason: str, message: str = "invalid request") -> Invalid:
        """One field error, in the same shape as document validation errors."""
        return cls(message, errors=[{"path": path, "reason": reason}])


class Unauthenticated(DomainError):
    """The caller could not be identified (no, a wrong or an expired credential)."""


class Forbidden(DomainError):
    """The caller is known but may not do this."""


class NotFound(DomainError):
    """The thing named does not exist."""


class Conflict(DomainError):
    """The thing exists but is in a state that does not allow this."""


class Gone(DomainError):
    """The thing existed but can never be used again (a used, expired or cancelled token)."""


class UnsupportedFormat(DomainError):
    """The document arrived in a format this operation does not read."""


class RateLimited(DomainError):
    """Too many attempts (failed logins): wait ``retry_after_s`` seconds."""

    def __init__(self, message: str, *, retry_after_s: float, **extra: Any) -> None:
        super().__init__(message, retry_after_s=max(1, round(retry_after_s)), **extra)
        self.retry_after_s = max(1, round(retry_after_s))


class TooLarge(DomainError):
    """The request, or a message it would produce, is over a size limit; the message
    names the limit and what to do instead."""


class Unavailable(DomainError):
    """A part the operation needs (the broker, a worker) is not there right now; retry."""


class TimedOut(DomainError):
    """A remote party (an agent) did not answer in time."""


class Corrupt(DomainError):
    """Stored or received data cannot be read (hand-edited KV entry, bad agent reply)."""


class UnknownName(Invalid):
    """The request names a pc, group or job that nothing knows (a typo?). The caller may
    insist with ``force`` (e.g. a pc that has not connected yet): the body says so in
    ``overridable_by`` so clients can name their own flag."""

    def __init__(self, message: str, *, errors: list[dict[str, str]]) -> None:
        super().__init__(message, errors=errors, overridable_by="force")
