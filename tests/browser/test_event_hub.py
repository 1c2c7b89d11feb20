"""The dashboard's live plumbing without a browser: the in-process hub and /api/events."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx

from kanade.backend.messaging.live import EventHub, merge
from stack import UpStack


def test_merge_unions_lists_keeps_order_and_caps() -> None:
    m = merge(None, {"exec_ids": ["a", "b"]})
    m = merge(m, {"exec_ids": ["b", "c"], "n": 1})
    assert m == {"exec_ids": ["a", "b", "c"], "n": 1}
    assert merge(m, {"exec_ids": [str(i) for i in range(5)]}, max_ids=4) == {
        "exec_ids": None,
        "n": 1,
    }
    # "many changed" (None) stays None whatever comes after.
    assert merge({"exec_ids": None}, {"exec_ids": ["x"]}) == {"exec_ids": None}


async def test_a_burst_becomes_one_event_per_topic() -> None:
    hub = EventHub()
    with hub.subscribe() as sub:
        assert not await sub.wait(timeout=0.01)
        for i in range(1000):
            hub.publish("results", {"exec_ids": [f"e{i % 3}"]})
        hub.publish("agents", {"pc_ids": ["pc-1"]})
        assert await sub.wait(timeout=1)
        assert sub.take() == [
            ("results", {"exec_ids": ["e0", "e1", "e2"]}),
            ("agents", {"pc_ids": ["pc-1"]}),
        ]
        assert sub.take() == []
    assert hub.subscribers == 0
    hub.publish("results", {})  # nobody listening: a no-op, never an error


async def test_publish_from_another_thread_wakes_the_subscriber() -> None:
    hub = EventHub()
    with hub.subscribe() as sub:
        threading.Thread(target=lambda: hub.publish("execs", {"exec_ids": ["x"]})).start()
        assert await asyncio.wait_for(sub.wait(), 2)
        assert sub.take() == [("execs", {"exec_ids": ["x"]})]


def test_event_stream_announces_a_new_execution(up: UpStack) -> None:
    seen: list[dict[str, object]] = []
    exec_id = ""
    deadline = time.monotonic() + 20
    with httpx.stream("GET", f"{up.url}/api/events", timeout=httpx.Timeout(20)) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if time.monotonic() > deadline:
                break
            if not line.startswith("data:"):
                continue
            ev = json.loads(line[5:])
            seen.append(ev)
            if ev["topic"] == "hello":
                r = httpx.post(
                    f"{up.url}/api/run",
                    json={"script": "echo sse", "target": {"pcs": ["local-1"]}},
                    timeout=10,
                )
                exec_id = r.json()["exec_id"]
            elif ev["topic"] == "results" and exec_id in (ev.get("exec_ids") or [exec_id]):
                break
    topics = [e["topic"] for e in seen]
    assert topics[0] == "hello"
    assert "results" in topics, seen
    assert any(e["topic"] == "execs" and exec_id in (e.get("exec_ids") or []) for e in seen), seen


def test_api_changes_announce_their_topics(up: UpStack) -> None:
    """A freeze set through the API reaches open dashboards as a live event, without any
    route announcing itself: the middleware maps every successful change to its topics."""
    topics: list[str] = []
    deadline = time.monotonic() + 20
    with httpx.stream("GET", f"{up.url}/api/events", timeout=httpx.Timeout(20)) as resp:
        for line in resp.iter_lines():
            if time.monotonic() > deadline or not line.startswith("data:"):
                continue
            ev = json.loads(line[5:])
            topics.append(ev["topic"])
            if ev["topic"] == "hello":
                r = httpx.put(f"{up.url}/api/freeze", json={"reason": "sse test"}, timeout=10)
                assert r.status_code == 200, r.text
            elif {"freeze", "schedules", "audit"} <= set(topics):
                break
    httpx.delete(f"{up.url}/api/freeze", timeout=10)
    assert "freeze" in topics and "schedules" in topics and "audit" in topics, topics
