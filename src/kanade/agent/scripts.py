"""Scripts stored as objects (``execute.script_object``): fetched, verified, cached (SPEC §8.3).

The backend pins the object's sha256 into the command; the agent runs the
script only if the bytes it holds hash to exactly that value. Verified scripts
are cached on disk by digest, so a command (or a local schedule) can still run
one while the broker is unreachable.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from nats.aio.client import Client

from kanade.agent.durable.fsutil import atomic_write, private_dir
from kanade.core import subjects
from kanade.core.digests import sha256_hex

log = logging.getLogger(__name__)


class ScriptUnavailable(Exception):
    """The script cannot be obtained (not cached, broker unreachable or object missing)."""


class ScriptRejected(Exception):
    """The script was obtained but does not match the pinned digest."""


class ScriptCache:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        private_dir(self.dir)

    def _path(self, sha256: str) -> Path:
        return self.dir / f"{sha256}.script"

    def cached(self, sha256: str) -> bytes | None:
        path = self._path(sha256)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if sha256_hex(data) != sha256:
            # Corrupted on disk: never run it, fetch it again.
            log.warning("cached script %s is corrupt; discarded", sha256)
            path.unlink(missing_ok=True)
            return None
        return data

    async def resolve(self, nc: Client | None, name: str, sha256: str | None) -> str:
        """The verified script text for object ``name`` pinned to ``sha256``."""
        if not sha256:
            raise ScriptRejected(f"script object {name!r} carries no sha256 pin")
        sha256 = sha256.lower()
        data = self.cached(sha256)
        if data is None:
            if nc is None or not nc.is_connected:
                raise ScriptUnavailable(
                    f"script object {name!r} is not cached on this machine and the broker "
                    "is unreachable"
                )
            try:
                store = await nc.jetstream().object_store(subjects.OBJ_SCRIPTS)
                result = await store.get(name)
            except Exception as exc:
                raise ScriptUnavailable(f"script object {name!r} could not be fetched: {exc}"
                                        ) from exc
            data = result.data or b""
            actual = sha256_hex(data)
            if actual != sha256:
                raise ScriptRejected(
                    f"script object {name!r} has sha256 {actual}, the command pins {sha256}"
                )
            # Only a cache: a full disk must not lose the command (it is refused later,
            # with a result, if the disk is still full when it would start).
            with contextlib.suppress(OSError):
                atomic_write(self._path(sha256), data)
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise ScriptRejected(f"script object {name!r} is not UTF-8 text") from exc
