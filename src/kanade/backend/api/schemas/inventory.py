"""Responses of ``/api/inventory`` and ``/api/checks``."""

from __future__ import annotations

from typing import Any

from kanade.backend.api.schemas.common import Instant, Schema


class InventoryEntry(Schema):
    """The latest facts one inventory job reported for one pc (``facts`` is free-form)."""

    pc_id: str
    job_id: str
    version: str
    facts: dict[str, Any]
    result_id: str
    exec_id: str
    observed_at: Instant
    recorded_at: Instant


class InventoryPage(Schema):
    items: list[InventoryEntry]
    total: int
    limit: int
    offset: int


class InventoryReport(Schema):
    """One accepted report in a pc's history."""

    result_id: str
    pc_id: str
    job_id: str
    version: str
    facts: dict[str, Any]
    exec_id: str
    observed_at: Instant
    recorded_at: Instant


class InventoryHistoryPage(Schema):
    items: list[InventoryReport]
    total: int
    limit: int
    offset: int


class PcInventory(Schema):
    pc_id: str
    items: list[InventoryEntry]
    total: int
    history: InventoryHistoryPage


class Check(Schema):
    pc_id: str
    name: str
    job_id: str
    version: str
    status: str
    detail: str
    result_id: str
    exec_id: str
    observed_at: Instant
    recorded_at: Instant


class CheckPage(Schema):
    items: list[Check]
    total: int
    limit: int
    offset: int
