"""Agent releases and the fleet's versions (SPEC §3.8)."""

from __future__ import annotations

from kanade.backend.api.schemas.common import Schema


class Release(Schema):
    name: str
    version: str
    platform: str
    sha256: str
    size: int
    build_id: str
    published_by: str | None = None
    published_at: str | None = None


class Published(Release):
    created: bool


class ReleaseList(Schema):
    items: list[Release]


class VersionCount(Schema):
    version: str
    count: int


class QuarantinedAgent(Schema):
    pc_id: str
    versions: list[str]
    running: str | None = None
    error: str | None = None


class FleetVersions(Schema):
    total: int
    versions: list[VersionCount]
    update_states: dict[str, int]
    quarantined: list[QuarantinedAgent]
    targets: dict[str, str]
    releases: list[Release]
