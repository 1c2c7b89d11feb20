"""Updating this agent to a target version (SPEC §3.8). Imported only when the effective
``target_version`` differs from the running version and is not quarantined.

1. wait a random 0..``target_version_jitter`` seconds (a fleet does not download at once);
2. read the release ``<version>/<platform>`` from the ``kanade_releases`` object store: its
   manifest must be signed by a key this agent pins (the same keyring as commands) and name
   this version and platform; the bytes must hash to the manifest's sha256;
3. install it beside the running one: ``releases/<version>/kanade-agent.pyz``;
4. check it while this version keeps serving: the new artefact, started with this agent's
   own arguments plus ``--update-check``, must import everything, read its credentials,
   connect to the broker and exit 0 within :data:`CHECK_TIMEOUT_S`; a failing check is
   retried up to :data:`~kanade.core.releases.ATTEMPTS` times, then the version is
   quarantined (reported in every heartbeat, never retried until the target changes);
5. switch: ``releases/state.json`` names it current (unconfirmed), the agent stops taking
   commands, lets what runs finish (ledger and outbox stay on disk), stops, and the process
   becomes the new version (:func:`kanade.agent.cli.restart_into`): ``exec`` on POSIX (same
   pid, so systemd or launchd see one process); on Windows a non-zero exit the service's
   recovery restarts. The new version confirms itself once its command consumer is open;
   one that never does is rolled back at its third start (:func:`.state.handover`).

A failure other than the check (no release for this platform, a download or signature
problem) is reported as ``failed`` and retried every :data:`RETRY_S`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import platform
import random
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from nats.aio.client import Client

from kanade.agent.trust import Trust
from kanade.agent.update.state import ReleaseState, ReleaseStatus, artefact_path
from kanade.core import subjects
from kanade.core.releases import (
    ATTEMPTS,
    ReleaseError,
    canonical_manifest,
    manifest_document,
    platform_tag,
    release_object_name,
)
from kanade.core.signing import release_message, verify

log = logging.getLogger("kanade.agent")

CHECK_TIMEOUT_S = float(os.environ.get("KANADE_AGENT_UPDATE_CHECK_TIMEOUT", "60"))
RETRY_S = 600.0
CHECK_PAUSE_S = 2.0


class UpdateFailed(Exception):
    """This attempt failed; the message says why (reported in the heartbeat)."""


def this_platform() -> str:
    return platform_tag(sys.platform, platform.machine(), sys.version_info[:2])


class SelfUpdater:
    def __init__(
        self,
        *,
        data_dir: Path,
        status: ReleaseStatus,
        trust: Trust,
        connection: Callable[[], Client | None],
        argv: Sequence[str],
        switch: Callable[[Path], Awaitable[None]],
        report: Callable[[], None],
    ) -> None:
        self.data_dir = data_dir
        self.status = status
        self.trust = trust
        self._connection = connection
        self._argv = list(argv)  # this agent's own arguments, e.g. ["run", "--config", F]
        self._switch = switch
        self._report = report  # a heartbeat now: the fleet sees the new phase at once

    def _phase(self, phase: str, error: str | None = None) -> None:
        self.status.phase, self.status.error = phase, error
        self._report()

    async def run(self, target: str, jitter: float) -> None:
        """Until updated (the process then becomes the new version) or quarantined."""
        if jitter > 0:
            self._phase("waiting")
            await asyncio.sleep(random.uniform(0, jitter))
        while True:
            try:
                path = await self._fetch(target)
                await self._check(target, path)
            except UpdateFailed as exc:
                log.warning("self-update to %s failed: %s; again in %.0f s", target, exc,
                            RETRY_S)
                self._phase("failed", str(exc))
                await asyncio.sleep(RETRY_S)
                continue
            except _Quarantined as exc:
                log.error("self-update to %s: %s; version quarantined", target, exc)
                self.status.quarantine(target, str(exc))
                self._report()
                return
            log.info("self-update: switching to %s", target)
            self._phase("switching")
            state = ReleaseState.load(self.data_dir)
            state.previous = self.status.running
            state.current, state.confirmed, state.boots = target, False, 1  # this start
            state.save(self.data_dir)
            await self._switch(path)
            return

    async def _fetch(self, target: str) -> Path:
        self._phase("downloading")
        nc = self._connection()
        if nc is None or not nc.is_connected:
            raise UpdateFailed("not connected to the broker")
        name = release_object_name(target, this_platform())
        try:
            store = await nc.jetstream().object_store(subjects.OBJ_RELEASES)
            info = await store.get_info(name)
        except Exception as exc:
            raise UpdateFailed(f"no release {name} in {subjects.OBJ_RELEASES}: {exc}") from exc
        manifest = self._verified_manifest(name, info.description)
        if manifest["version"] != target or manifest["platform"] != this_platform():
            raise UpdateFailed(f"release {name} is signed for {manifest['version']}/"
                               f"{manifest['platform']}")
        path = artefact_path(self.data_dir, target)
        if path.is_file() and _sha256(path.read_bytes()) == manifest["sha256"]:
            return path  # downloaded by an earlier attempt
        try:
            got = await store.get(name)
        except Exception as exc:
            raise UpdateFailed(f"download of {name} failed: {exc}") from exc
        data = bytes(got.data or b"")
        if _sha256(data) != manifest["sha256"] or len(data) != manifest["size"]:
            raise UpdateFailed(f"release {name} does not match its signed sha256/size")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(0o755)
        os.replace(tmp, path)
        log.info("self-update: %s downloaded and verified (%d bytes)", name, len(data))
        return path

    def _verified_manifest(self, name: str, description: str | None) -> dict[str, object]:
        try:
            doc = json.loads(description or "")
            raw = canonical_manifest(doc["manifest"])
            header = doc["signature"]
            m = doc["manifest"]
            manifest = manifest_document(version=m["version"], platform=m["platform"],
                                         sha256=m["sha256"], size=m["size"],
                                         build_id=m["build_id"])
        except (ValueError, KeyError, TypeError, ReleaseError) as exc:
            raise UpdateFailed(f"release {name} has no valid manifest: {exc}") from None
        verdict = verify(self.trust.keyring, release_message(name, raw), header,
                         self.trust._now())
        if not verdict.ok:
            raise UpdateFailed(f"release {name} refused: {verdict.reason}")
        return manifest

    async def _check(self, target: str, path: Path) -> None:
        failures: list[str] = []
        for attempt in range(1, ATTEMPTS + 1):
            self._phase("trying")
            why = await _check_once(path, self._argv, target)
            if why is None:
                return
            failures.append(why)
            log.warning("self-update: %s failed its check (%d/%d): %s", target, attempt,
                        ATTEMPTS, why)
            await asyncio.sleep(CHECK_PAUSE_S)
        raise _Quarantined(f"failed its start-and-connect check {ATTEMPTS} times: "
                           f"{failures[-1]}")


class _Quarantined(Exception):
    pass


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _check_once(path: Path, argv: Sequence[str], target: str) -> str | None:
    """None when ``path`` started, connected and said it is ``target``; else why not."""
    cmd = [sys.executable, str(path), *argv, "--update-check"]
    env = {k: v for k, v in os.environ.items() if k not in ("KANADE_AGENT_ARTEFACT",)}
    env["KANADE_AGENT_LAUNCHED"] = target  # the check never hands over to anything
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), CHECK_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return f"no answer in {CHECK_TIMEOUT_S:.0f} s"
    text = out.decode(errors="replace").strip()
    if proc.returncode != 0:
        tail = text.splitlines()[-1] if text else "no output"
        return f"exit {proc.returncode}: {tail[:300]}"
    if f"update-check ok {target}" not in text:
        return f"it reports another version: {text[-200:]}"
    return None
