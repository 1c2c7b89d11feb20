"""Command-signing keys (SPEC §8.2): what is active, and rotation with overlap.

A rotation makes a new key pair, announces the new key set in KV signed by the *old*
key (agents learn a key only through a message signed by one they trust), saves the
key directory, switches the backend's signer, then re-signs every document agents obey,
so none depends on the old key once it retires. Old keys stay trusted by agents until
their retire instant (default overlap 24 h).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog

from kanade.backend.messaging.audit import publish_audit
from kanade.bus.connection import Bus
from kanade.bus.kvsigned import SignedKeyValue, resign
from kanade.bus.kvsnapshot import kv_changes
from kanade.core import subjects
from kanade.core.instants import Clock, format_instant, system_clock
from kanade.core.signing import Signer
from kanade.security.signing_keys import (
    KeySet,
    load_key_dir,
    plan_rotation,
    save_key_dir,
)

log = structlog.get_logger(__name__)


def describe(keys: KeySet) -> dict[str, Any]:
    return {
        "active": keys.active,
        "keys": [
            {
                "kid": k.pair.kid,
                "created_at": format_instant(k.created_at),
                "retire_at": None if k.retire_at is None else format_instant(k.retire_at),
            }
            for k in keys.keys
        ],
    }


class SigningKeyService:
    def __init__(
        self,
        key_dir: Path,
        signer: Signer,
        bus: Callable[[], Bus],
        *,
        clock: Clock = system_clock,
    ) -> None:
        self.key_dir = key_dir
        self.signer = signer  # the one the bus signs with: switching it switches the bus
        self._bus = bus
        self._clock = clock

    def current(self) -> dict[str, Any]:
        return describe(load_key_dir(self.key_dir))

    def public_keys(self) -> list[dict[str, Any]]:
        """The keyring an enrolling agent pins (what it writes to ``keyring.json``)."""
        keys: list[dict[str, Any]] = load_key_dir(self.key_dir).keyring().to_json()["keys"]
        return keys

    async def rotate(self, *, overlap: timedelta, actor: str) -> dict[str, Any]:
        bus = self._bus()
        now = self._clock()
        before = load_key_dir(self.key_dir)
        after = plan_rotation(before, now, overlap=overlap)
        announcement = after.keyring(issued_at=now).encode()
        # Signed by the key agents trust now (the bus still signs with it).
        trust = await bus.kv(subjects.KV_TRUST)
        await trust.put(subjects.SIGNING_KEYS_KEY, announcement)
        save_key_dir(self.key_dir, after)
        self.signer.switch(after.pair(), after.keyring())
        rewritten = 0
        for bucket in sorted(subjects.SIGNED_BUCKETS - {subjects.KV_TRUST}):
            kv = await bus.kv(bucket)
            assert isinstance(kv, SignedKeyValue)
            rewritten += await resign(kv, await kv_changes(bus.js, bucket), after.active)
        log.warning(
            "command-signing key rotated",
            old=before.active,
            new=after.active,
            resigned=rewritten,
        )
        details = {
            "old": before.active,
            "new": after.active,
            "overlap_s": overlap.total_seconds(),
            "resigned": rewritten,
        }
        await publish_audit(self._bus, "keys.rotate", actor, details, at=now)
        return {**describe(after), "previous": before.active, "resigned": rewritten}
