"""Responses of ``/api/jobs``: job manifests in their canonical JSON form."""

from __future__ import annotations

from kanade.backend.api.schemas.common import OpenSchema, Schema


class JobDocument(OpenSchema):
    """A job manifest as stored (SPEC §2.1; full JSON Schema: ``GET /api/schemas/job``).
    Open: every manifest field beyond the identity is passed through as written."""

    id: str
    version: str


class JobList(Schema):
    items: list[JobDocument]
    total: int
