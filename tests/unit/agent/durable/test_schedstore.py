"""The local scheduler's files: instants written by any agent version load back."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from kanade.agent.durable.schedstore import STATE_FILE, STORE_DIR, SchedulerStore
from kanade.core.scheduling import Claim

T = datetime(2025, 3, 9, 7, 0, tzinfo=UTC)


def _state(tmp_path: Path, body: object) -> SchedulerStore:
    store = tmp_path / STORE_DIR
    store.mkdir()
    (store / STATE_FILE).write_text(json.dumps(body))
    return SchedulerStore(tmp_path)


def test_every_form_of_a_stored_instant_loads_as_utc(tmp_path: Path) -> None:
    ticks = {
        "z": "2025-03-09T07:00:00Z",
        "offset": "2025-03-09T07:00:00+00:00",
        "other-offset": "2025-03-09T02:00:00-05:00",
        "naive": "2025-03-09T07:00:00",
        "micro": "2025-03-09T07:00:00.000000Z",
    }
    loaded, _ = _state(tmp_path, {"version": 1, "last_ticks": ticks}).load_state()
    assert loaded == dict.fromkeys(ticks, T)
    assert all(moment.tzinfo is UTC for moment in loaded.values())


def test_values_that_are_not_instants_are_skipped(tmp_path: Path) -> None:
    ticks = {"ok": "2025-03-09T07:00:00Z", "text": "yesterday", "number": 5, "none": None,
             "long": "2025-03-09T07:00:00Z" + " " * 100}
    claims = [
        {"schedule_id": "s", "owner": "r", "claimed_at": "2025-03-09T07:00:00Z", "until": "x"},
        {"schedule_id": "s", "owner": "r", "claimed_at": "2025-03-09T07:00:00Z",
         "until": "2025-03-09T08:00:00+00:00"},
    ]
    loaded, kept = _state(
        tmp_path, {"version": 1, "last_ticks": ticks, "claims": claims}
    ).load_state()
    assert loaded == {"ok": T}
    assert kept == [Claim("s", "r", T, T.replace(hour=8))]


def test_saved_state_round_trips_in_the_z_form(tmp_path: Path) -> None:
    store = SchedulerStore(tmp_path, durable=False)
    store.save_state({"s": T}, [Claim("s", "r", T, T.replace(hour=8))])
    body = json.loads((tmp_path / STORE_DIR / STATE_FILE).read_text())
    assert body["last_ticks"] == {"s": "2025-03-09T07:00:00Z"}
    assert body["claims"][0]["until"] == "2025-03-09T08:00:00Z"
    claim = Claim("s", "r", T, T.replace(hour=8))
    assert SchedulerStore(tmp_path).load_state() == ({"s": T}, [claim])
