"""Re-projection is order-independent for exec statuses (SPEC §4.3).

The projectors read two streams (KANADE_EXECS: creation and decision records; KANADE_RESULTS:
started events and results) through two consumers, and the reaper runs on its own clock, so
after a wiped database the same events arrive in any interleaving. Hypothesis draws an exec's
events (creation, an approval, a cancel, started events and results of several pcs, a reaper
pass) and checks that every permutation, written through the projectors' own write functions,
ends in the same row: status and counters.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import StaticPool
from store_rows import T0, exec_row, row

from kanade.backend.store import executions
from kanade.backend.store.tables import metadata
from kanade.backend.workers.projection.execs import write_exec_records
from kanade.backend.workers.projection.results import write_results
from kanade.backend.workers.projection.worker import Item
from kanade.backend.workers.reaper import reap

PCS = ("p1", "p2", "p3")
LATER = T0 + timedelta(days=2)  # every pending exec and in-flight row is overdue by then

Event = tuple[str, Any]


_ENGINE = create_engine("sqlite://", poolclass=StaticPool)
metadata.create_all(_ENGINE)


def _engine() -> Engine:
    """The one in-memory database, emptied (creating the schema per example is slow)."""
    with _ENGINE.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    return _ENGINE


def _item(row_: dict[str, Any], **kw: Any) -> Item:
    return Item(None, row_, **kw)  # type: ignore[arg-type]  # the writers never read msg


@st.composite
def exec_events(draw: st.DrawFn) -> list[Event]:
    """One exec's events: what the live system could have produced for it."""
    awaiting = draw(st.booleans())
    approved = awaiting and draw(st.booleans())
    dispatched = not awaiting or approved
    record = exec_row("e1", list(PCS)) | {
        "status": "awaiting_approval" if awaiting else "pending"
    }
    events: list[Event] = [("created", record)]
    if approved:
        events.append(("decision", {"exec_id": "e1", "status": "pending",
                                    "at": T0 + timedelta(seconds=1)}))  # fmt: skip
    if draw(st.booleans()):  # an operator's kill (only ever recorded when it applied)
        events.append(("decision", {"exec_id": "e1", "status": "cancelled",
                                    "at": T0 + timedelta(seconds=2)}))  # fmt: skip
    if dispatched:
        for i, pc in enumerate(PCS):
            at = T0 + timedelta(seconds=10 + i)
            fate = draw(st.sampled_from(["none", "started", "ok", "failed", "skipped", "both"]))
            if fate in ("started", "both"):
                events.append(("started", row(f"r{i}", "e1", pc, state="in_flight", at=at)))
            if fate in ("ok", "both"):
                events.append(("result", row(f"r{i}", "e1", pc, state="finished", at=at)))
            if fate == "failed":
                events.append(("result", row(f"r{i}", "e1", pc, state="finished", at=at,
                                             exit_code=1)))  # fmt: skip
            if fate == "skipped":
                events.append(("result", row(f"r{i}", "e1", pc, state="finished", at=at,
                                             exit_code=122, skipped=True)))  # fmt: skip
    if draw(st.booleans()):
        events.append(("reap", None))
    return events


def _apply(engine: Engine, events: list[Event]) -> tuple[Any, ...]:
    for kind, payload in events:
        with engine.begin() as conn:
            if kind == "created":
                write_exec_records(conn, [_item(payload)], T0)
            elif kind == "decision":
                write_exec_records(conn, [_item(payload, status_only=True)], T0)
            elif kind == "started":
                write_results(conn, [_item(payload, started=True)], T0)
            elif kind == "result":
                write_results(conn, [_item(payload)], T0)
            else:
                reap(conn, LATER)
    with engine.begin() as conn:
        reap(conn, LATER)  # the reaper keeps running after any replay
        got = executions.get_execution(conn, "e1")
    assert got is not None
    keys = ("status", "started_count", "finished_count", "failed_count", "skipped_count")
    return tuple(got[k] for k in keys)


@st.composite
def two_orders(draw: st.DrawFn) -> tuple[list[Event], list[Event]]:
    events = draw(exec_events())
    return events, draw(st.permutations(events))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(two_orders())
def test_every_replay_order_gives_the_same_exec_row(
    orders: tuple[list[Event], list[Event]],
) -> None:
    live, replayed = orders
    assert _apply(_engine(), replayed) == _apply(_engine(), live)


def _cancel_and_late_result() -> list[Event]:
    record = exec_row("e1", ["p1"])
    cancel = {"exec_id": "e1", "status": "cancelled", "at": T0 + timedelta(seconds=2)}
    return [
        ("created", record),
        ("decision", cancel),
        ("result", row("r0", "e1", "p1", state="finished", at=T0 + timedelta(seconds=9))),
    ]


def _approval_after_its_results() -> list[Event]:
    record = exec_row("e1", ["p1"]) | {"status": "awaiting_approval"}
    approved = {"exec_id": "e1", "status": "pending", "at": T0 + timedelta(seconds=1)}
    return [
        ("result", row("r0", "e1", "p1", state="finished", at=T0 + timedelta(seconds=9))),
        ("created", record),
        ("decision", approved),
    ]


def test_a_cancel_wins_over_a_late_result_in_either_order() -> None:
    events = _cancel_and_late_result()
    assert _apply(_engine(), events)[0] == "cancelled"
    assert _apply(_engine(), events[::-1])[0] == "cancelled"


def test_an_approved_exec_completes_whether_its_results_come_first_or_last() -> None:
    events = _approval_after_its_results()
    assert _apply(_engine(), events) == ("completed", 1, 1, 0, 0)
    assert _apply(_engine(), events[::-1]) == ("completed", 1, 1, 0, 0)
