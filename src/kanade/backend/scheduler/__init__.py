"""The backend's central scheduler (SPEC §4.4, §9): ``runs_on: backend`` schedules.

* :mod:`.engine` — :class:`Scheduler`: lease, catalog watch, tick loop, dispatch;
* :mod:`.lease` — the KV lease that lets exactly one backend process schedule;
* :mod:`.state` — per-schedule ``last_tick`` and dispatch marks in ``kanade_dispatch``;
* :mod:`.store` — SQL: exec-row claims (occurrence identity), decision log and counters;
* :mod:`.plans` — plan lowering with the backend's reconcile poll, the local zone;
* :mod:`.views` — status, preview and drift for the API.

Every scheduling rule itself lives in :mod:`kanade.core.scheduling`.
"""

from __future__ import annotations

from kanade.backend.scheduler.engine import Scheduler

__all__ = ["Scheduler"]
