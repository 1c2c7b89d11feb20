"""What an agent's local scheduler decided about one occurrence (SPEC §3.6, §4.4):
``kanade.decision.<pc>.<schedule_id>``, agent → backend, durable (through the outbox).

A ``runs_on: agent`` schedule fires on each targeted agent, so only the agent knows that an
occurrence fired, was skipped (frozen, outside its window, a skip date, its deadline passed,
the previous run still holding the claim) or was missed while the agent was down. Each
report carries the agent's running totals for that schedule (``totals``, within ``epoch``,
the life of the agent's decision file), so the backend's counters are the latest totals of
each pc — correct however many reports were lost, replayed or pruned. Bounded at the writer
(:func:`bounded`) and checked by the reader (the model's limits).
"""

from __future__ import annotations

import json
from typing import Annotated, Final, Literal

from pydantic import Field

from kanade.core.bounds import Instant
from kanade.core.models.base import WireModel

DecisionResult = Literal["fired", "skipped", "missed"]
DETAIL_MAX: Final = 1000
REASON_MAX: Final = 64
COUNT_MAX: Final = 1_000_000_000

Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]
Count = Annotated[int, Field(ge=0, le=COUNT_MAX)]


class DecisionTotals(WireModel):
    fired: Count = 0
    skipped: Count = 0
    missed: Count = 0


class ScheduleDecisionReport(WireModel):
    pc_id: Id
    schedule_id: Id
    occurrence_id: Annotated[str, Field(min_length=1, max_length=255)]
    nominal_time: Instant
    decided_at: Instant
    result: DecisionResult
    reason: Annotated[str, Field(max_length=REASON_MAX)] | None = None
    detail: Annotated[str, Field(max_length=DETAIL_MAX)] = ""
    count: Annotated[int, Field(ge=1, le=COUNT_MAX)] = 1
    """How many occurrences it stands for (a ``missed`` report lists several)."""
    request_id: Annotated[str, Field(max_length=64)] | None = None
    """The command a fire ran as (its result carries the same one)."""
    epoch: Annotated[str, Field(min_length=1, max_length=64)]
    totals: DecisionTotals

    @property
    def decision_id(self) -> str:
        """One id per pc, occurrence and outcome: the row's key (and, through
        :func:`kanade.core.msgids.decision_msg_id`, the broker's dedup id)."""
        return f"{self.pc_id}:{self.occurrence_id}:{self.result}"

    def encode(self) -> bytes:
        return json.dumps(
            self.model_dump(mode="json", exclude_none=True), separators=(",", ":")
        ).encode()


def bounded(text: str | None, limit: int) -> str | None:
    """``text`` cut to ``limit`` characters (with a marker), for a writer's free text."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


__all__ = [
    "DETAIL_MAX",
    "REASON_MAX",
    "DecisionResult",
    "DecisionTotals",
    "ScheduleDecisionReport",
    "bounded",
]
