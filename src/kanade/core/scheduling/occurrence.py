"""Occurrence identity (SPEC §4.4): ``(schedule_id, nominal time)`` → stable occurrence,
request and exec ids.

Why these ids make an occurrence fire once: docs/scheduling-core.md, "Occurrence identity".
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Final

from kanade.core.ids import is_slug
from kanade.core.scheduling.timezones import to_utc

PREFIX: Final = "sched"


def _stamp(nominal: datetime) -> str:
    moment = to_utc(nominal)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def occurrence_id(schedule_id: str, nominal: datetime) -> str:
    """``sched:<schedule_id>:<nominal UTC ISO second>Z`` — stable and unique per pair."""
    if not is_slug(schedule_id):
        raise ValueError(f"{schedule_id!r} is not a schedule id")
    return f"{PREFIX}:{schedule_id}:{_stamp(nominal)}"


def parse_occurrence_id(text: str) -> tuple[str, datetime]:
    """The ``(schedule_id, nominal UTC)`` of an occurrence id; ``ValueError`` otherwise."""
    prefix, sep, rest = text.partition(":")
    schedule_id, sep2, stamp = rest.partition(":")
    if prefix != PREFIX or not sep or not sep2 or not is_slug(schedule_id):
        raise ValueError(f"{text!r} is not an occurrence id")
    if not stamp.endswith("Z"):
        raise ValueError(f"{text!r} is not an occurrence id")
    try:
        nominal = datetime.fromisoformat(stamp[:-1]).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{text!r} is not an occurrence id") from None
    if occurrence_id(schedule_id, nominal) != text:
        raise ValueError(f"{text!r} is not a canonical occurrence id")
    return schedule_id, nominal


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def request_id_for(occurrence: str, pc_id: str | None = None) -> str:
    """The deterministic ``request_id`` (also the broker ``Nats-Msg-Id``) of an occurrence,
    for one pc or (``pc_id=None``) for a whole-target publish."""
    return _digest("kanade-request", occurrence, "*" if pc_id is None else "pc:" + pc_id)


def exec_id_for(occurrence: str) -> str:
    """The deterministic ``exec_id`` of an occurrence (shared by all its pcs)."""
    return _digest("kanade-exec", occurrence)
