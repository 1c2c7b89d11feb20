"""The release state at every start (SPEC §3.8): which version a start becomes, the rollback
of a version that never confirms, and when the running agent starts an update."""

from __future__ import annotations

from pathlib import Path

import pytest

from kanade.agent.update.state import (
    ATTEMPTS,
    LAUNCHED_ENV,
    ReleaseState,
    ReleaseStatus,
    artefact_path,
    confirm,
    handover,
)
from kanade.core.releases import ATTEMPTS as CORE_ATTEMPTS


@pytest.fixture(autouse=True)
def _no_launch_marker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LAUNCHED_ENV, raising=False)


def _artefact(data: Path, version: str) -> Path:
    path = artefact_path(data, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"pyz")
    return path


def test_the_attempt_counts_agree() -> None:
    assert ATTEMPTS == CORE_ATTEMPTS


def test_no_state_runs_what_starts(tmp_path: Path) -> None:
    assert handover(tmp_path, "1.0") is None
    assert not (tmp_path / "releases").exists()


def test_a_start_becomes_the_current_version(tmp_path: Path) -> None:
    path = _artefact(tmp_path, "2.0")
    ReleaseState(current="2.0", previous="1.0").save(tmp_path)
    assert handover(tmp_path, "1.0") == path
    assert handover(tmp_path, "2.0") is None  # it is running already
    path.unlink()
    assert handover(tmp_path, "1.0") is None  # its artefact is gone: run as we are


def test_an_unconfirmed_version_is_rolled_back_after_too_many_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _artefact(tmp_path, "2.0")
    ReleaseState(current="2.0", previous="1.0", confirmed=False, boots=1).save(tmp_path)
    # The switch itself was start 1; a crash, then the service manager starts the entry
    # program (1.0), which hands over again: starts 2 and 3 ...
    for boots in (2, 3):
        assert handover(tmp_path, "1.0") == path
        assert ReleaseState.load(tmp_path).boots == boots
    # ... the process handed over to does not count itself twice
    monkeypatch.setenv(LAUNCHED_ENV, "2.0")
    assert handover(tmp_path, "2.0") is None
    assert ReleaseState.load(tmp_path).boots == 3
    monkeypatch.delenv(LAUNCHED_ENV)
    # start 4: quarantined, back to 1.0 (which is what is starting: it just runs)
    assert handover(tmp_path, "1.0") is None
    state = ReleaseState.load(tmp_path)
    assert state.current == "1.0" and state.confirmed and state.boots == 0
    assert "rolled back" in state.quarantined["2.0"]


def test_a_version_started_directly_counts_its_own_starts(tmp_path: Path) -> None:
    ReleaseState(current="2.0", previous="1.0", confirmed=False, boots=0).save(tmp_path)
    for _ in range(ATTEMPTS):
        assert handover(tmp_path, "2.0") is None
    _artefact(tmp_path, "1.0")
    assert handover(tmp_path, "2.0") == artefact_path(tmp_path, "1.0")  # rolled back


def test_confirming_ends_the_count(tmp_path: Path) -> None:
    ReleaseState(current="2.0", previous="1.0", confirmed=False, boots=2).save(tmp_path)
    confirm(tmp_path, "1.0")  # not the current one: nothing
    assert not ReleaseState.load(tmp_path).confirmed
    confirm(tmp_path, "2.0")
    state = ReleaseState.load(tmp_path)
    assert state.confirmed and state.boots == 0 and state.previous == "1.0"


def test_a_torn_state_file_reads_as_none(tmp_path: Path) -> None:
    (tmp_path / "releases").mkdir()
    (tmp_path / "releases" / "state.json").write_text("{ torn")
    assert ReleaseState.load(tmp_path) == ReleaseState()
    (tmp_path / "releases" / "state.json").write_text('{"current": 3, "boots": "x"}')
    assert ReleaseState.load(tmp_path) == ReleaseState()


def test_the_running_agent_starts_an_update_only_when_it_must(tmp_path: Path) -> None:
    started: list[tuple[str, float]] = []
    status = ReleaseStatus(tmp_path, "1.0")

    def start(target: str, jitter: float) -> None:
        started.append((target, jitter))

    status.on_target(None, 0.0, start)
    status.on_target("1.0", 0.0, start)  # running it already
    status.on_target("not a version!", 0.0, start)
    assert started == [] and status.report() is not None  # a target is set: reported
    status.on_target("2.0", 3600.0, start)
    assert started == [("2.0", 3600.0)]
    status.quarantine("2.0", "failed its check")
    status.on_target("2.0", 0.0, start)  # not retried while the target stays
    assert started == [("2.0", 3600.0)]
    assert status.report() == {"state": "quarantined", "target": "2.0",
                               "quarantined": ["2.0"], "error": "failed its check"}
    # A restart keeps the quarantine (it is on disk) ...
    again = ReleaseStatus(tmp_path, "1.0")
    again.on_target("2.0", 0.0, start)
    assert started == [("2.0", 3600.0)]
    # ... until the target changes: then an earlier quarantine is forgotten.
    again.on_target("3.0", None, start)
    assert started[-1] == ("3.0", 0.0)
    assert ReleaseState.load(tmp_path).quarantined == {}
    again.on_target("2.0", 0.0, start)
    assert started[-1] == ("2.0", 0.0)


def test_an_agent_with_nothing_to_report_reports_nothing(tmp_path: Path) -> None:
    assert ReleaseStatus(tmp_path, "1.0").report() is None
