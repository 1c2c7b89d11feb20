"""What every response schema shares: the base models, the instant type, list pages.

Response schemas describe the bodies the services already build; they must not change
them. Three rules keep the bytes identical to the untyped responses they replaced: keys
are written in the order the service built them; a schema lists every key
(``extra="forbid"``: a key the schema forgot is a loud error, never a silent drop) unless
the body is genuinely open; an instant is written with ``datetime.isoformat()`` as
FastAPI's encoder did (pydantic alone would write ``Z``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    PlainSerializer,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    model_serializer,
    model_validator,
)


class _InOrder(BaseModel):
    """Writes the keys in the order the service built them (not the declaration order),
    so declaring a schema never reorders a body."""

    _order: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _remember_order(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        instance = handler(data)
        if isinstance(data, dict):
            instance._order = tuple(data)
        return instance

    @model_serializer(mode="wrap")
    def _write_in_order(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        # No return annotation on purpose: pydantic then documents the fields, not a dict.
        out = handler(self)
        if not self._order or not isinstance(out, dict):
            return out
        ordered = {k: out[k] for k in self._order if k in out}
        ordered.update((k, v) for k, v in out.items() if k not in ordered)
        return ordered


class Schema(_InOrder):
    """A closed response body: exactly these keys."""

    model_config = ConfigDict(extra="forbid")


class OpenSchema(_InOrder):
    """A response body with documented keys plus free-form ones (documents, heartbeats)."""

    model_config = ConfigDict(extra="allow")


Instant = Annotated[
    datetime,
    PlainSerializer(lambda moment: moment.isoformat(), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]
"""A moment from the database (aware, UTC), written as ``isoformat()`` (``+00:00``)."""
