"""KV writes that carry the backend's signature (SPEC §8.2).

nats-py's ``KeyValue`` publishes puts, updates, deletes and purges without headers of
ours; this subclass publishes the same messages (same subjects, the same
``KV-Operation``, expected-last-sequence and roll-up headers, the same errors) plus the
``Kanade-Signature`` of bucket, key, operation and value. Reads are nats-py's own. The
``Bus`` hands it out for the buckets agents obey when it holds a signer, so every writer
of those buckets (plain puts, compare-and-set, deletes) signs without knowing it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from nats.js import api
from nats.js.errors import APIError, InvalidKeyError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, MSG_ROLLUP_SUBJECT, KeyValue, _is_key_valid

from kanade.bus.kv import KvChange, operation_of
from kanade.bus.kvcas import WRONG_LAST_SEQUENCE_CODES
from kanade.core.signing import KV_PUT, Signer, header_of, parse_header

log = logging.getLogger(__name__)


class UnsignedDocument(ValueError):
    """A stored value this backend did not sign (the reason in the message)."""


class SignedKeyValue(KeyValue):
    def __init__(self, kv: KeyValue, signer: Signer) -> None:
        super().__init__(
            name=kv._name, stream=kv._stream, pre=kv._pre, js=kv._js, direct=kv._direct
        )
        self._signer = signer

    async def last(self, key: str) -> KvChange | None:
        """The key's last message (a value or a delete marker) with its headers; None
        when the key has none."""
        try:
            msg = await self._js.get_last_msg(self._stream, f"{self._pre}{key}")
        except NotFoundError:
            return None
        headers = dict(msg.headers) if msg.headers else None
        operation = operation_of(headers)
        value = bytes(msg.data or b"") if operation == KV_PUT else None
        return KvChange(key, value, operation, headers, msg.seq)

    async def verified(self, key: str, now: datetime) -> bytes | None:
        """The key's live value, only if it carries a signature by a key the backend
        trusts (``None``: absent or deleted); :class:`UnsignedDocument` otherwise. What
        the backend turns into signed commands must itself be signed (SPEC §8.2)."""
        change = await self.last(key)
        if change is None or change.value is None:
            return None
        verification = self._signer.verify_kv(
            self._name, key, change.operation, change.value, header_of(change.headers), now
        )
        if not verification.ok:
            raise UnsignedDocument(f"{self._name}/{key}: {verification.reason}")
        return change.value

    def _signed(self, key: str, operation: str, value: bytes) -> dict[str, str]:
        return self._signer.kv_headers(self._name, key, operation, value)

    async def put(self, key: str, value: bytes, validate_keys: bool = True) -> int:
        if validate_keys and not _is_key_valid(key):
            raise InvalidKeyError(key)
        pa = await self._js.publish(
            f"{self._pre}{key}", value, headers=self._signed(key, KV_PUT, value)
        )
        return pa.seq

    async def _update(
        self,
        key: str,
        value: bytes,
        last: int | None = None,
        validate_keys: bool = True,
        msg_ttl: float | None = None,
    ) -> int:
        # create() and update() both end here, as in nats-py.
        if validate_keys and not _is_key_valid(key):
            raise InvalidKeyError(key)
        headers = self._signed(key, KV_PUT, value)
        headers[api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE] = str(last or 0)
        try:
            pa = await self._js.publish(
                f"{self._pre}{key}", value, headers=headers, msg_ttl=msg_ttl
            )
        except APIError as err:
            if err.err_code in WRONG_LAST_SEQUENCE_CODES:
                raise KeyWrongLastSequenceError(description=err.description) from err
            raise
        return pa.seq

    async def delete(
        self,
        key: str,
        last: int | None = None,
        validate_keys: bool = True,
        msg_ttl: float | None = None,
    ) -> bool:
        if validate_keys and not _is_key_valid(key):
            raise InvalidKeyError(key)
        headers = self._signed(key, KV_DEL, b"")
        headers[KV_OP] = KV_DEL
        if last and last > 0:
            headers[api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE] = str(last)
        await self._js.publish(f"{self._pre}{key}", headers=headers)
        return True

    async def purge(self, key: str, msg_ttl: float | None = None) -> bool:
        headers = self._signed(key, KV_PURGE, b"")
        headers[KV_OP] = KV_PURGE
        headers[api.Header.ROLLUP] = MSG_ROLLUP_SUBJECT
        await self._js.publish(f"{self._pre}{key}", headers=headers, msg_ttl=msg_ttl)
        return True


async def resign(kv: SignedKeyValue, changes: list[KvChange], active_kid: str) -> int:
    """Write again, signed by the active key, every key (value or delete marker) in
    ``changes`` that another key signed — after a rotation, before the old key retires,
    so no document an agent obeys depends on a retired key. Each rewrite is a
    compare-and-set on the revision read: a key changed meanwhile (and so signed by the
    active key already) is left alone. Returns how many were rewritten."""
    rewritten = 0
    for change in changes:
        parsed = parse_header(header_of(change.headers))
        if parsed is not None and parsed[0] == active_kid:
            continue
        try:
            if change.operation == KV_PURGE:
                await kv.purge(change.key)
            elif change.value is None:
                await kv.delete(change.key, last=change.revision)
            else:
                await kv.update(change.key, change.value, last=change.revision)
        except KeyWrongLastSequenceError:
            continue
        except APIError as exc:
            if exc.err_code in WRONG_LAST_SEQUENCE_CODES:
                continue
            raise
        rewritten += 1
    return rewritten


def signed_by(signer: Signer | None, bucket: str, change: KvChange, now: datetime) -> bool:
    """Whether ``change`` of ``bucket`` carries a signature ``signer`` trusts: what the
    backend reads back before acting on it. Without a signer (a tool, a test's plain bus)
    nothing is checked."""
    if signer is None:
        return True
    verification = signer.verify_kv(
        bucket, change.key, change.operation, change.value or b"", header_of(change.headers), now
    )
    if not verification.ok:
        log.warning("ignored KV %s/%s: %s", bucket, change.key, verification.reason)
    return verification.ok
