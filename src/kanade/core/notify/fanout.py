"""Which webhook hears of which events, grouped into deliveries.

A webhook receives an event when it is enabled, subscribes to the event's kind, existed
when the event happened (a new webhook is not told about the past), and — for
``agent.offline`` — was the one whose ``offline_after`` detected it. Events of one kind
for one webhook are grouped, at most :data:`~.payloads.MAX_EVENTS` per delivery: a fleet
going offline at once is one message, not ten thousand. A delivery's id is derived from
its webhook and its events, so planning the same events twice plans the same deliveries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kanade.core.instants import as_utc
from kanade.core.notify.events import MAX_SUMMARY, EventKind, clip, group_summary
from kanade.core.notify.payloads import MAX_EVENTS


@dataclass(frozen=True)
class PlannedDelivery:
    delivery_id: str
    webhook_id: str
    kind: str
    event_ids: tuple[str, ...]
    summary: str


def delivery_id_for(webhook_id: str, event_ids: Sequence[str]) -> str:
    joined = "\x00".join([webhook_id, *sorted(event_ids)])
    return hashlib.sha256(joined.encode()).hexdigest()[:32]


def hears(webhook: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether ``webhook`` (a ``webhooks`` row) receives ``event`` (a ``notify_events`` row)."""
    kind = str(event["kind"])
    if not webhook["enabled"] or kind not in (webhook["events"] or []):
        return False
    if as_utc(webhook["created_at"]) > as_utc(event["occurred_at"]):
        return False
    if kind == EventKind.AGENT_OFFLINE:
        return event.get("threshold_s") == float(webhook["offline_after_s"])
    return True


def plan(
    webhooks: Iterable[Mapping[str, Any]], events: Sequence[Mapping[str, Any]]
) -> list[PlannedDelivery]:
    """The deliveries ``events`` (oldest first) make for ``webhooks``."""
    out: list[PlannedDelivery] = []
    for webhook in webhooks:
        by_kind: dict[str, list[Mapping[str, Any]]] = {}
        for event in events:
            if hears(webhook, event):
                by_kind.setdefault(str(event["kind"]), []).append(event)
        for kind, heard in by_kind.items():
            for i in range(0, len(heard), MAX_EVENTS):
                chunk = heard[i : i + MAX_EVENTS]
                ids = tuple(str(e["event_id"]) for e in chunk)
                summary = clip(
                    group_summary(kind, [str(e["summary"]) for e in chunk], len(chunk)),
                    MAX_SUMMARY,
                )
                wid = str(webhook["webhook_id"])
                out.append(PlannedDelivery(delivery_id_for(wid, ids), wid, kind, ids, summary))
    return out
