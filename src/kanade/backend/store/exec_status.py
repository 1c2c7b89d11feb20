"""Transitional: ``services/rollouts.py`` still imports :func:`set_exec_status` from here.

Delete once it imports it from :mod:`kanade.backend.store.executions`.
"""

from __future__ import annotations

from kanade.backend.store.executions import set_exec_status

__all__ = ["set_exec_status"]
