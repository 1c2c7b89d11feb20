"""Base classes for the two kinds of model.

* :class:`DocModel` — documents people write (jobs, schedules, targets). They
  keep unknown fields in ``model_extra`` instead of failing, so a *reader* is
  tolerant (old and new versions coexist), while the strict *writer* path
  (``kanade.core.validation``) walks the tree and rejects every unknown field
  with its path.
* :class:`WireModel` — messages between processes. Unknown fields are dropped
  on read so an older agent understands a newer backend and vice versa.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DocModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class WireModel(BaseModel):
    # defer_build: a model's validator is built on its first use, so an idle agent holds
    # only what it uses (heartbeat, consumer reply), not every message it might see
    # (SPEC §10.2 idle RSS); the first command pays a few milliseconds once.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)
