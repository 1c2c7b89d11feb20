"""The backend's central scheduler (SPEC §4.4, §9): ``runs_on: backend`` schedules.

Every scheduling rule itself lives in :mod:`kanade.core.scheduling`; this package is the
process shell around it: lease and leadership, catalog watch, planning, dispatch and fires
prepared ahead, composed by :mod:`.engine` (see ``docs/scheduler.md``).
"""

from __future__ import annotations

from kanade.backend.workers.scheduler.engine import Scheduler

__all__ = ["Scheduler"]
