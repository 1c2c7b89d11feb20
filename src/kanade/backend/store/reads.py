"""Transitional: the old catch-all read module, re-exporting from the aggregate modules.

Delete once nothing imports it. New code imports :mod:`~kanade.backend.store.agents`,
:mod:`~kanade.backend.store.executions`, :mod:`~kanade.backend.store.results` and
:mod:`~kanade.backend.store.paging` directly.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from kanade.backend.store import agents as _agents
from kanade.backend.store.agents import get_agent, list_agents, page_agents
from kanade.backend.store.executions import get_execution, list_executions
from kanade.backend.store.paging import Page, Record
from kanade.backend.store.paging import page as _page
from kanade.backend.store.results import get_result, list_results, results_of_exec
from kanade.core.fleet import ALIVE_WINDOW

__all__ = [
    "Page",
    "Record",
    "_page",
    "alive_agents",
    "get_agent",
    "get_execution",
    "get_result",
    "list_agents",
    "list_executions",
    "list_results",
    "page_agents",
    "results_of_exec",
]


def alive_agents(conn: Connection, cutoff: datetime) -> list[tuple[str, list[str]]]:
    """Old signature (``cutoff`` = ``alive_cutoff(now)``); new code: ``agents.alive_agents``."""
    return _agents.alive_agents(conn, cutoff + ALIVE_WINDOW)
