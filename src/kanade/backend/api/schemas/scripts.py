"""Responses of ``/api/scripts``."""

from __future__ import annotations

from kanade.backend.api.schemas.common import Schema


class ScriptObject(Schema):
    """A stored script object: what a job names in ``execute.script_object``."""

    script_object: str
    size: int
    sha256: str | None
