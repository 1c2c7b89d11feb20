"""What an idle agent loads (SPEC §10.2: agent idle RSS ≤ 40 MB).

Every module imported stays resident in every agent of the fleet, so the agent loads the
scheduling core (schedule and job models, cronsim, validation), PyYAML and psutil only when
it needs them:

* an agent process, up to a built heartbeat, with a scheduler that has nothing to do, holds
  none of them (checked in a fresh interpreter: ``sys.modules`` is per process);
* the local scheduler activates — loads the core — as soon as a ``runs_on: agent`` schedule
  may target it, or at start when its files hold something to pick up
  (``tests/unit/agent/scheduling/test_local_scheduler.py`` and
  ``tests/integration/test_agent_scheduler_e2e.py`` cover what it then does);
* :func:`~kanade.agent.scheduling.documents.might_apply`, the cheap test on raw documents
  that decides it, never says no to a schedule the agent applies once parsed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kanade.agent.durable.ledger import Admission
from kanade.agent.durable.schedstore import (
    CATALOG_FILE,
    STATE_FILE,
    STORE_DIR,
    SUCCESSES_FILE,
    SchedulerStore,
)
from kanade.agent.fleet.state import FleetState
from kanade.agent.scheduling.documents import might_apply
from kanade.agent.scheduling.scheduler import LocalScheduler
from kanade.core.digests import EMPTY_SET_VERSION
from kanade.core.scheduling import expected_version, schedule_set_version
from kanade.core.scheduling.version import applies_to_agent
from kanade.core.validation import DocumentInvalid, parse_schedule

# Loaded only once the local scheduler is active (records: once a kill request comes), or never.
LAZY = [
    "cronsim",
    "kanade.core.scheduling",
    "kanade.core.models.schedule",
    "kanade.core.models.job",
    "kanade.core.models.target",
    "kanade.core.validation",
    "kanade.core.dispatch",
    "kanade.core.models.records",
    "kanade.agent.scheduling.catalog",
    "kanade.agent.scheduling.firing",
    "kanade.core.scheduling.timezones",
    "tzlocal",
    "yaml",
    # live output: the watch leases at idle, the publisher once a script first runs
    "kanade.agent.liveout.publisher",
    "kanade.agent.liveout.budget",
    "kanade.agent.liveout.buffer",
]
NEVER = [
    "typer",
    "rich",
    "structlog",
    "click",
    # The broker launcher and the topology are for the backend and the CLI (the launcher
    # pulls in urllib.request); the PKI's cryptography costs ~9 MB (SPEC §8.1, §10.2).
    "kanade.bus.broker",
    "kanade.bus.topology",
    "urllib.request",
    "cryptography",
    "kanade.security",  # nothing of it at idle (pki/authority would pull in cryptography)
    # nats-py's and pydantic's metadata look-ups are answered without it (leanimport).
    "importlib.metadata",
    "zipfile",
    "email.parser",  # nats-py's JetStream header parser, loaded on first use
    "shutil",  # (and bz2, lzma) loaded by the first PATH look-up of a shell
    # Self-update and service installation: only when a target version differs / the
    # install verbs run (SPEC §3.8, §3.9).
    "kanade.agent.update.updater",
    "kanade.agent.service.installer",
    "kanade.agent.service.managers",
    "kanade.agent.service.winhost",
]
if sys.platform.startswith("linux"):
    NEVER.append("psutil")  # /proc is read directly there

IDLE_AGENT = """
import asyncio, json, sys
from pathlib import Path

from kanade.agent.leanimport import import_lean
import_lean()  # as kanade-agent run does first

from kanade.agent.cli import _parser
from kanade.agent.runtime import Agent
from kanade.agent.settings import load_settings
from kanade.core.models.wire import encode

_parser().parse_args(["run", "--pc-id", "pc-1"])
data = Path(sys.argv[2])  # made by the test: tempfile would load shutil here
settings = load_settings(None, {"pc_id": "pc-1", "groups": ["web"], "data_dir": data})
fleet_docs = json.loads(sys.argv[1])

async def main():
    agent = Agent(settings)
    fleet = agent.fleet
    # What a re-sync leaves: catalogs with schedules that are not for this agent.
    fleet.schedules.values = {k: v.encode() for k, v in fleet_docs.items()}
    for mirror in fleet.mirrors:
        mirror.synced = True
    fleet.schedules._notify()
    await agent.scheduler.refresh()
    agent.scheduler.tick(agent.scheduler._clock())
    encode(agent.heartbeat())
    return agent.scheduler.active, agent.scheduler.version

active, version = asyncio.run(main())
print(json.dumps({"active": active, "version": version, "modules": sorted(sys.modules)}))
"""


def _doc(schedule_id: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": schedule_id,
        "job_id": "job-1",
        "when": {"cron": "*/5 * * * *"},
        "target": {"pcs": ["pc-1"]},
        "runs_on": "agent",
        "tz": "utc",
    }
    body.update(fields)
    return body


def _idle_agent(schedules: dict[str, dict[str, Any]]) -> dict[str, Any]:
    docs = {k: json.dumps(v) for k, v in schedules.items()}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(IDLE_AGENT), json.dumps(docs), tempfile.mkdtemp()],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _loaded(modules: list[str], names: list[str]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_an_idle_agent_does_not_load_the_scheduling_core_yaml_or_psutil() -> None:
    not_mine = {
        "central": _doc("central", runs_on="backend", target={"all": True}),
        "other-pc": _doc("other-pc", target={"pcs": ["pc-2"]}),
        "other-group": _doc("other-group", target={"groups": ["db"]}),
        "disabled": _doc("disabled", enabled=False, target={"all": True}),
    }
    result = _idle_agent(not_mine)
    assert result["active"] is False
    assert result["version"] == EMPTY_SET_VERSION
    assert not _loaded(result["modules"], LAZY + NEVER)


def test_the_core_is_loaded_when_a_schedule_targets_the_agent() -> None:
    result = _idle_agent({"mine": _doc("mine", target={"groups": ["web"]})})
    assert result["active"] is True
    assert result["version"] != EMPTY_SET_VERSION
    assert "cronsim" in result["modules"]
    assert "kanade.core.scheduling" in result["modules"]


def test_the_empty_set_version_is_the_cores() -> None:
    assert EMPTY_SET_VERSION == schedule_set_version(()) == expected_version([], "pc-1", [])


# --- activation ----------------------------------------------------------------------------------
def _scheduler(data: Path, fleet: FleetState | None = None) -> LocalScheduler:
    return LocalScheduler(
        pc_id="pc-1",
        data_dir=data,
        fleet=fleet or FleetState(pc_id="pc-1", groups=[]),
        submit=lambda _cmd: Admission.NEW,
        groups=lambda: [],
        durable=False,
        local_tz=UTC,
    )


@pytest.mark.parametrize(
    ("name", "content", "active"),
    [
        (CATALOG_FILE, {"version": 1, "schedules": {"s": {}}, "jobs": {}}, True),
        (CATALOG_FILE, {"version": 1, "schedules": {}, "jobs": {}, "revoked": ["j"]}, False),
        (STATE_FILE, {"version": 1, "last_ticks": {"s": "2025-01-01T00:00:00Z"}}, True),
        (STATE_FILE, {"version": 1, "last_ticks": {}, "claims": [{"schedule_id": "s"}]}, True),
        (STATE_FILE, {"version": 1, "last_ticks": {}, "claims": []}, False),
        (SUCCESSES_FILE, {"version": 1, "successes": {"s": "2025-01-01T00:00:00Z"}}, True),
        (SUCCESSES_FILE, {"version": 1, "successes": {}}, False),
        (SUCCESSES_FILE, "{ torn", True),  # the loader reports it
        (STATE_FILE, [], True),
    ],
)
def test_files_left_by_an_earlier_run_activate_the_scheduler_at_start(
    tmp_path: Path, name: str, content: Any, active: bool
) -> None:
    store = tmp_path / STORE_DIR
    store.mkdir()
    (store / name).write_text(content if isinstance(content, str) else json.dumps(content))
    assert SchedulerStore(tmp_path).has_state() is active
    assert _scheduler(tmp_path).active is active


def test_an_empty_data_dir_leaves_the_scheduler_inactive(tmp_path: Path) -> None:
    scheduler = _scheduler(tmp_path)
    assert not scheduler.active
    assert scheduler.version == EMPTY_SET_VERSION
    assert scheduler.seconds_until_next(scheduler._clock()) > 0


async def test_activation_then_stale_ticks_are_dropped_from_disk(tmp_path: Path) -> None:
    """Ticks of schedules that are not applied any more are forgotten at the first live
    read, on disk too: the next start does not load the core for them."""
    store = tmp_path / STORE_DIR
    store.mkdir()
    (store / STATE_FILE).write_text(
        json.dumps({"version": 1, "last_ticks": {"gone": "2025-01-01T00:00:00Z"}, "claims": []})
    )
    fleet = FleetState(pc_id="pc-1", groups=[])
    scheduler = _scheduler(tmp_path, fleet)
    assert scheduler.active
    for mirror in fleet.mirrors:
        mirror.synced = True
    await scheduler.refresh()
    assert not SchedulerStore(tmp_path).has_state()
    assert not _scheduler(tmp_path).active


# --- the cheap test never misses a schedule the agent applies ------------------------------------
TARGETS: list[Any] = [
    {"all": True},
    {"all": "yes"},
    {"all": 1},
    {"all": False, "pcs": ["pc-1"]},
    {"all": "no", "pcs": ["pc-2"]},
    {"all": 0, "groups": ["web"]},
    {"pcs": ["pc-2"], "groups": ["web", "db"]},
    {"pcs": ["pc-2"]},
    {"groups": ["db"]},
    {"groups": "web"},
    {"pcs": "pc-1"},
    {"pcs": ["pc-1", 3]},
    {"pcs": ["pc-1"], "extra": "kept"},
    {},
    None,
    "all",
]
DOCS: list[Any] = [
    *(_doc("s", target=t) for t in TARGETS),
    *(_doc("s", runs_on=r, target={"all": True}) for r in ("backend", "Agent", None, 1)),
    *(_doc("s", enabled=e, target={"all": True}) for e in (True, False, "true", 1, None)),
    {k: v for k, v in _doc("s", target={"all": True}).items() if k != "runs_on"},
    [_doc("s")],
    "not a schedule",
]


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: json.dumps(d)[:60])
@pytest.mark.parametrize("groups", [[], ["web"], ["db", "web"]])
def test_might_apply_is_a_superset_of_applies_to_agent(doc: Any, groups: list[str]) -> None:
    try:
        applies = applies_to_agent(parse_schedule(doc, strict=False), "pc-1", groups)
    except DocumentInvalid:
        applies = False
    if applies:
        assert might_apply(json.dumps(doc).encode(), "pc-1", groups)


_VALUES: st.SearchStrategy[Any] = st.sampled_from(
    [True, False, None, 0, 1, "yes", "no", "true", "agent", "pc-1", "web", [], ["pc-1"], ["web"],
     ["pc-2", "db"], ["pc-1", "web"], {}]
)
_TARGET = st.dictionaries(st.sampled_from(["all", "pcs", "groups", "other"]), _VALUES, max_size=4)


@settings(max_examples=300, deadline=None)
@given(
    target=st.one_of(_TARGET, _VALUES),
    runs_on=st.one_of(st.just("agent"), _VALUES),
    enabled=st.one_of(st.just("<absent>"), st.just(True), _VALUES),
    groups=st.sampled_from([[], ["web"], ["db"], ["web", "db"]]),
)
def test_might_apply_is_a_superset_property(
    target: Any, runs_on: Any, enabled: Any, groups: list[str]
) -> None:
    doc = _doc("s", target=target, runs_on=runs_on, enabled=enabled)
    if enabled == "<absent>":
        del doc["enabled"]
    try:
        applies = applies_to_agent(parse_schedule(doc, strict=False), "pc-1", groups)
    except DocumentInvalid:
        applies = False
    if applies:
        assert might_apply(json.dumps(doc).encode(), "pc-1", groups)


@pytest.mark.parametrize(
    "raw",
    [b"{ torn", b"\xff\xfe", json.dumps(_doc("s", runs_on="backend")).encode()],
)
def test_might_apply_says_no_to_documents_no_agent_applies(raw: bytes) -> None:
    assert not might_apply(raw, "pc-1", ["web"])


# --- heartbeat figures without psutil ------------------------------------------------------------
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is read on Linux only")
def test_heartbeat_figures_match_psutil() -> None:
    import time

    import psutil

    from kanade.agent.heartbeat import Telemetry, boot_time, rss_bytes

    ours, theirs = rss_bytes(), psutil.Process().memory_info().rss
    assert abs(ours - theirs) <= max(ours, theirs) * 0.05
    assert abs(boot_time() - psutil.boot_time()) <= 1.0
    telemetry = Telemetry()
    # Busy for 0.2 s of CPU, however long a loaded machine takes to give it: the expected
    # figure is what this process really got, not one core.
    cpu0, wall0 = time.process_time(), time.monotonic()
    while time.process_time() - cpu0 < 0.2 and time.monotonic() - wall0 < 20:
        pass
    ours_pct = telemetry.cpu_percent()
    expected = 100 * (time.process_time() - cpu0) / (time.monotonic() - wall0)
    assert expected * 0.5 - 5 <= ours_pct <= expected * 1.5 + 5, (ours_pct, expected)
