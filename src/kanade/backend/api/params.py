"""Path parameters, typed once: each carries the pattern the OpenAPI document states and the
route enforces (a value outside it is a 400 naming ``path.<name>``, never a lookup).

Slugs are :data:`kanade.core.ids.SLUG_RE`; exec, rollout, result and token ids are minted
as hex but carry suffixes (``<exec>:refused``), hence the looser :data:`ID_PATTERN`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from fastapi import Path
from pydantic import BeforeValidator

from kanade.backend.store.users import USERNAME_RE
from kanade.core.ids import SLUG_RE

SLUG_PATTERN: Final = SLUG_RE.pattern
ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,255}$"
VERSION_PATTERN: Final = r"^[^/]{1,256}$"

JobId = Annotated[str, Path(pattern=SLUG_PATTERN, description="a job id (slug)")]
ScheduleId = Annotated[str, Path(pattern=SLUG_PATTERN, description="a schedule id (slug)")]
PcId = Annotated[str, Path(pattern=SLUG_PATTERN, description="a pc id (slug)")]
GroupName = Annotated[str, Path(pattern=SLUG_PATTERN, description="a group name (slug)")]
LayerName = Annotated[
    str, Path(pattern=SLUG_PATTERN, description="the group or pc a config layer is for")
]
ExecId = Annotated[str, Path(pattern=ID_PATTERN, description="an exec id")]
RolloutId = Annotated[str, Path(pattern=ID_PATTERN, description="a rollout id (its exec id)")]
ResultId = Annotated[str, Path(pattern=ID_PATTERN, description="a result id")]
TokenId = Annotated[str, Path(pattern=ID_PATTERN, description="an enrolment token id")]
WebhookId = Annotated[str, Path(pattern=SLUG_PATTERN, description="a webhook name (slug)")]
DeliveryId = Annotated[str, Path(pattern=ID_PATTERN, description="a webhook delivery id")]
Username = Annotated[str, Path(pattern=USERNAME_RE.pattern, description="a user name")]
Version = Annotated[str, Path(pattern=VERSION_PATTERN, description="a job version")]
Scope = Annotated[
    str, Path(pattern=r"^(global|group|pc)$", description="global, group or pc")
]


def _iso_only(value: object) -> object:
    # pydantic reads a bare number as a Unix time; the document promises ISO 8601 text.
    if isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")
    return value


IsoInstant = Annotated[datetime, BeforeValidator(_iso_only)]
"""A query-string instant: ISO 8601 text only."""
