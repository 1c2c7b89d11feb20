"""JSON Schemas of the user-authored documents (SPEC §2.3), generated from the models.

These are the *strict writer's* view: ``additionalProperties: false`` on every object,
so an editor flags a misspelt field the same way ``kanade job validate`` does.
Durations are strings with the grammar's pattern. The schemas are a convenience for
editors and API clients; the authority stays :mod:`kanade.core.validation` (a schema
cannot express rules such as "exactly one of" or "from before until" completely).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from kanade.core.durations import format_duration
from kanade.core.models.job import JobManifest
from kanade.core.models.schedule import Schedule

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class _Generator(GenerateJsonSchema):
    def encode_default(self, dft: Any) -> Any:
        # Defaults are shown as users write them ("0s"), not in ISO 8601 ("PT0S").
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)


def _close_objects(node: Any) -> None:
    """Set ``additionalProperties: false`` on every object schema that lists properties.

    The models themselves allow extras (``extra="allow"``) so that readers are tolerant;
    pydantic would therefore emit ``additionalProperties: true``.
    """
    if isinstance(node, dict):
        if "properties" in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close_objects(value)
    elif isinstance(node, list):
        for item in node:
            _close_objects(item)


def _schema(model: type[BaseModel], title: str) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_Generator)
    _close_objects(schema)
    return {"$schema": SCHEMA_DIALECT, **schema, "title": title}


def job_json_schema() -> dict[str, Any]:
    """JSON Schema of a job manifest (SPEC §2.1)."""
    return _schema(JobManifest, "kanade job manifest")


def schedule_json_schema() -> dict[str, Any]:
    """JSON Schema of a schedule (SPEC §2.2)."""
    return _schema(Schedule, "kanade schedule")
