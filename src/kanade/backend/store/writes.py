"""Transitional: the old catch-all write module, re-exporting from the aggregate modules.

Delete once nothing imports it. New code imports :mod:`~kanade.backend.store.agents`,
:mod:`~kanade.backend.store.executions`, :mod:`~kanade.backend.store.results`,
:mod:`~kanade.backend.store.projection_state` and :mod:`~kanade.backend.store.upsert`.
"""

from __future__ import annotations

from kanade.backend.store.agents import upsert_agents
from kanade.backend.store.executions import (
    apply_exec_status,
    refresh_exec_counters,
    upsert_executions,
)
from kanade.backend.store.projection_state import get_state, set_state_if_absent
from kanade.backend.store.results import insert_started, upsert_finished
from kanade.backend.store.upsert import chunks as _chunks
from kanade.backend.store.upsert import insert as _insert

__all__ = [
    "_chunks",
    "_insert",
    "apply_exec_status",
    "get_state",
    "insert_started",
    "refresh_exec_counters",
    "set_state_if_absent",
    "upsert_agents",
    "upsert_executions",
    "upsert_finished",
]
