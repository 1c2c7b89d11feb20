"""The admission ledger remembers every request_id at least as long as the agent accepts
the command (kanade.agent.durable.ledger, SPEC §8.2 replays)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kanade.agent.durable.ledger import REPLAY_HORIZON_S, Admission, Ledger


def finished(ledger: Ledger, rid: str, at: float) -> None:
    assert ledger.admit(rid, "d-" + rid, "{}", at, extra={"seq": "1"}) is Admission.NEW
    ledger.mark_finished(rid, "{}", at)
    ledger.mark_queued(rid)


def test_a_retention_shorter_than_the_command_lifetime_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="replayed command could run twice"):
        Ledger(tmp_path, retention_s=REPLAY_HORIZON_S - 1)


def test_the_size_bound_never_forgets_an_id_a_replay_could_still_match(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, max_entries=2, durable=False)
    now = 10 * REPLAY_HORIZON_S
    finished(ledger, "old", now - REPLAY_HORIZON_S - 1)
    for rid in ("a", "b", "c"):
        finished(ledger, rid, now - 60)
    assert ledger.prune(now) == 1  # only the one older than the horizon
    assert ledger.get("old") is None
    for rid in ("a", "b", "c"):
        assert ledger.admit(rid, "d-" + rid, "{}", now) is Admission.DUPLICATE


def test_admission_keeps_its_extra_fields_across_a_reload(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, durable=False)
    ledger.admit("r1", "d", "{}", 1.0, extra={"refused": "refused: unsigned"})
    ledger.close()
    again = Ledger(tmp_path)
    again.load()
    entry = again.get("r1")
    assert entry is not None and entry.extra == {"refused": "refused: unsigned"}
