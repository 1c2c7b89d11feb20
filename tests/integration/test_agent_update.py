"""Agent releases on a real broker, fast (SPEC §3.8): the backend's publish (signed, immutable,
only real artefacts) and the agent's updater (signature, sha256, the start-and-connect check,
quarantine), with tiny stand-in artefacts whose check answers as told. The real-process
version with real agent builds is tests/integration/test_agent_self_update_e2e.py (slow)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any, cast

import pytest
from nats.js.api import ObjectMeta

import trust
from kanade.agent.trust import Trust
from kanade.agent.update import updater as updater_module
from kanade.agent.update.state import ReleaseState, ReleaseStatus
from kanade.agent.update.updater import SelfUpdater, UpdateFailed, this_platform
from kanade.backend.errors import Conflict, Invalid
from kanade.backend.services.releases import ReleaseService
from kanade.bus import Bus
from kanade.core import subjects
from kanade.core.releases import canonical_manifest
from kanade.core.signing import KeyPair


def artefact(version: str, *, check_exit: int = 0, platform: str | None = None) -> bytes:
    """A zipapp that answers `--update-check` like an agent (or fails with ``check_exit``)."""
    main = (
        "import sys\n"
        f"if '--update-check' in sys.argv:\n"
        f"    print('update-check ok {version}' if {check_exit} == 0 else 'boom')\n"
        f"    sys.exit({check_exit})\n"
    )
    manifest = {"version": version, "platform": platform or this_platform(),
                "build_id": "00ff"}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", main)
        zf.writestr("kanade-release.json", json.dumps(manifest))
    return buf.getvalue()


def _service(bus: Bus) -> ReleaseService:
    return ReleaseService(cast(Any, None), lambda: bus, cast(Any, None))


def _updater(tmp_path: Path, bus: Bus, switched: list[Path]) -> SelfUpdater:
    async def switch(path: Path) -> None:
        switched.append(path)

    return SelfUpdater(
        data_dir=tmp_path, status=ReleaseStatus(tmp_path, "1.0.0"),
        trust=Trust(trust.keyring_path()), connection=lambda: bus.nc,
        argv=["run", "--config", "unused.yaml"], switch=switch, report=lambda: None,
    )


async def test_publish_is_signed_immutable_and_only_takes_artefacts(bus: Bus) -> None:
    service = _service(bus)
    data = artefact("2.0.0")
    made = await service.publish(data, actor="alice")
    assert made["created"] and made["name"] == f"2.0.0/{this_platform()}"
    again = await service.publish(data, actor="bob")
    assert again["created"] is False and again["published_by"] == "alice"
    with pytest.raises(Conflict, match="immutable"):
        await service.publish(artefact("2.0.0", check_exit=1), actor="alice")
    with pytest.raises(Invalid, match="not a single-file agent"):
        await service.publish(b"not a zip", actor="alice")
    with pytest.raises(Invalid, match=r"version: '\.\./x'"):
        await service.publish(artefact("../x"), actor="alice")
    listed = await service.releases()
    assert [r["version"] for r in listed] == ["2.0.0"]


async def test_the_agent_downloads_verifies_checks_and_switches(
    bus: Bus, tmp_path: Path
) -> None:
    await _service(bus).publish(artefact("2.0.0"), actor="alice")
    switched: list[Path] = []
    await _updater(tmp_path, bus, switched).run("2.0.0", 0.0)
    assert switched == [tmp_path / "releases" / "2.0.0" / "kanade-agent.pyz"]
    state = ReleaseState.load(tmp_path)
    assert (state.current, state.previous, state.confirmed, state.boots) == (
        "2.0.0", "1.0.0", False, 1)


async def test_a_version_that_fails_its_check_is_quarantined(
    bus: Bus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(updater_module, "CHECK_PAUSE_S", 0.0)
    await _service(bus).publish(artefact("3.0.0", check_exit=3), actor="alice")
    switched: list[Path] = []
    updater = _updater(tmp_path, bus, switched)
    await updater.run("3.0.0", 0.0)
    assert switched == []
    assert updater.status.phase == "quarantined"
    assert "failed its start-and-connect check 3 times: exit 3: boom" in str(
        updater.status.error)
    assert "3.0.0" in ReleaseState.load(tmp_path).quarantined
    assert ReleaseState.load(tmp_path).current is None  # never switched


async def test_tampered_forged_and_missing_releases_are_refused(
    bus: Bus, tmp_path: Path
) -> None:
    service = _service(bus)
    await service.publish(artefact("4.0.0"), actor="alice")
    store = await bus.obj(subjects.OBJ_RELEASES)
    name = f"4.0.0/{this_platform()}"
    info = await store.get_info(name)
    updater = _updater(tmp_path, bus, [])
    # Other bytes under the signed manifest (anyone who could write the store):
    await store.put(name, artefact("4.0.0", check_exit=1),
                    meta=ObjectMeta(name=name, description=info.description))
    with pytest.raises(UpdateFailed, match="does not match its signed sha256"):
        await updater._fetch("4.0.0")
    # A manifest signed by a key the agent does not pin:
    doc = json.loads(str(info.description))
    stranger = KeyPair.generate()
    doc["signature"] = stranger.header(
        b"kanade-release-v1\0" + name.encode() + b"\0" + canonical_manifest(doc["manifest"]))
    await store.put(name, artefact("4.0.0"), meta=ObjectMeta(name=name,
                                                           description=json.dumps(doc)))
    with pytest.raises(UpdateFailed, match="refused: signed by unknown key"):
        await updater._fetch("4.0.0")
    # A manifest moved to another name (its signature covers the name):
    moved = f"5.0.0/{this_platform()}"
    await store.put(moved, artefact("4.0.0"), meta=ObjectMeta(name=moved,
                                                            description=info.description))
    with pytest.raises(UpdateFailed, match="refused: bad signature"):
        await updater._fetch("5.0.0")
    with pytest.raises(UpdateFailed, match=r"no release 6\.0\.0/"):
        await updater._fetch("6.0.0")
