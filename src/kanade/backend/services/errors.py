"""Errors the service layer raises; the API maps each to a JSON body and status."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error with an HTTP status and a JSON body ``{"error": message, **extra}``."""

    status = 500

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.extra}


class BadRequest(ApiError):
    status = 400

    @classmethod
    def at(cls, path: str, reason: str, message: str = "invalid request") -> BadRequest:
        """One field error, in the same shape as document validation errors."""
        return cls(message, errors=[{"path": path, "reason": reason}])


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class BrokerUnavailable(ApiError):
    status = 503
