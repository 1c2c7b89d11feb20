"""Transitional: ``api/schedules.py`` still imports ``backend_local_zone`` from here.

Delete once it imports :func:`kanade.core.scheduling.timezones.local_zone` instead.
"""

from __future__ import annotations

from kanade.core.scheduling.timezones import local_zone as backend_local_zone

__all__ = ["backend_local_zone"]
