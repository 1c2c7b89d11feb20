"""Stop controls and fleet state (SPEC §3.7, §4.5): revoke, kill, ping, config, groups.

Everything here writes the KV layouts the agents mirror (see ``kanade.agent.kvmirror``):

* ``kanade_revocations``: key = job id, value = JSON ``{"revoked_at", "by", "reason"}``;
  presence means revoked, unrevoke deletes the key;
* ``kanade_groups``: key = pc id, value = JSON list of group names (merged by the agent
  with its static ``--group`` flags);
* ``kanade_config``: keys ``global``, ``group.<g>``, ``pc.<pc_id>``, each a JSON object
  of settings validated by :func:`kanade.core.agentconfig.validate_setting`.

Read-modify-write of a KV value is a compare-and-set on the key's revision, so two
operators changing the same layer or membership at once never lose an update.

Every mutating call publishes an audit record to ``kanade.audit.<action>``. Like the
exec path, a failed audit publish is logged, not raised: the change is already made and
failing the request would only invite a retry.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.errors import NotFoundError as JsNotFoundError
from nats.js.kv import KeyValue

from kanade.backend.catalog.jobs import JobCatalog
from kanade.backend.errors import Conflict, Corrupt, Invalid, NotFound, TimedOut
from kanade.backend.messaging.records import AuditRecord
from kanade.backend.store import reads, writes
from kanade.backend.store.database import Database
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.agentconfig import effective_config, layer_key, validate_setting
from kanade.core.execstatus import can_transition
from kanade.core.ids import SLUG_RULE, is_slug, new_id
from kanade.core.models.target import Target
from kanade.core.models.wire import Command, Heartbeat, WireDecodeError, decode
from kanade.core.targeting import command_subjects

log = structlog.get_logger(__name__)

ConfigScope = Literal["global", "group", "pc"]
OutputStream = Literal["stdout", "stderr"]

# Compare-and-set attempts before a concurrent writer wins with a 409.
_CAS_ATTEMPTS = 10
# JetStream error codes of a failed "expected last subject sequence" check.
_WRONG_LAST = (10071, 10164)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def require_slug(value: str, what: str) -> str:
    if not is_slug(value):
        raise Invalid.at(what, f"{value!r} {SLUG_RULE}", message=f"invalid {what}")
    return value


@dataclass(frozen=True)
class KvValue:
    value: bytes | None
    revision: int | None


async def _kv_read(kv: KeyValue, key: str) -> KvValue:
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return KvValue(None, None)
    return KvValue(entry.value, entry.revision)


async def _kv_cas(
    kv: KeyValue, key: str, mutate: Callable[[bytes | None], bytes | None]
) -> tuple[bytes | None, bytes | None]:
    """Apply ``mutate(old) -> new`` (None = delete) as a compare-and-set; (old, new)."""
    for _ in range(_CAS_ATTEMPTS):
        current = await _kv_read(kv, key)
        new = mutate(current.value)
        if new == current.value:
            return current.value, new
        try:
            if new is None:
                await kv.delete(key, last=current.revision)
            elif current.revision is None:
                await kv.create(key, new)  # also re-creates over a delete marker
            else:
                await kv.update(key, new, last=current.revision)
        except KeyWrongLastSequenceError:
            continue
        except APIError as exc:
            if exc.err_code in _WRONG_LAST:
                continue
            raise
        return current.value, new
    raise Conflict(f"{key!r} is being changed concurrently; retry", key=key)


def _json_or(raw: bytes | None, default: Any) -> Any:
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return default


def _dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _group_list(raw: bytes | None) -> list[str]:
    value = _json_or(raw, [])
    return sorted({g for g in value if isinstance(g, str)}) if isinstance(value, list) else []


class ControlService:
    def __init__(
        self,
        db: Database,
        bus: Callable[[], Bus],
        *,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._db = db
        self._bus = bus  # a getter: raises Unavailable (503) while the broker is away
        self._clock = clock

    # --- audit -------------------------------------------------------------------------
    async def _audit(self, bus: Bus, action: str, actor: str, details: dict[str, Any]) -> None:
        record = AuditRecord(action=action, actor=actor, at=self._clock(), details=details)
        try:
            await bus.publish_js(
                subjects.audit_subject(action),
                record.model_dump_json().encode(),
                msg_id=f"audit:{action}:{new_id()}",
            )
        except Exception:
            log.exception("audit record not written", action=action, details=details)

    # --- revocations ---------------------------------------------------------------------
    async def revoke(self, job_id: str, *, reason: str | None, actor: str) -> dict[str, Any]:
        require_slug(job_id, "job_id")
        bus = self._bus()
        kv = await bus.kv(subjects.KV_REVOCATIONS)
        now = self._clock()
        record = {"revoked_at": _iso(now), "by": actor, "reason": reason or ""}
        previous = await _kv_read(kv, job_id)
        await kv.put(job_id, _dumps(record))
        await self._audit(bus, "revoke", actor, {"job_id": job_id, "reason": record["reason"]})
        log.info("job revoked", job_id=job_id, actor=actor, reason=record["reason"])
        return {
            "job_id": job_id,
            "revoked": True,
            "was_revoked": previous.value is not None,
            **record,
        }

    async def unrevoke(self, job_id: str, *, actor: str) -> dict[str, Any]:
        require_slug(job_id, "job_id")
        bus = self._bus()
        kv = await bus.kv(subjects.KV_REVOCATIONS)
        previous = await _kv_read(kv, job_id)
        if previous.value is not None:
            await kv.delete(job_id)
        await self._audit(bus, "unrevoke", actor, {"job_id": job_id})
        log.info("job unrevoked", job_id=job_id, actor=actor)
        return {"job_id": job_id, "revoked": False, "was_revoked": previous.value is not None}

    async def revocations(self) -> list[dict[str, Any]]:
        kv = await self._bus().kv(subjects.KV_REVOCATIONS)
        out = []
        for key in await _keys(kv):
            current = await _kv_read(kv, key)
            if current.value is None:
                continue
            record = _json_or(current.value, {})
            if not isinstance(record, dict):
                record = {}
            out.append(
                {
                    "job_id": key,
                    "revoked_at": record.get("revoked_at"),
                    "by": record.get("by"),
                    "reason": record.get("reason", ""),
                }
            )
        return out

    async def delete_job(self, job_id: str, *, actor: str) -> dict[str, Any]:
        """Revoke (SPEC §4.5: job delete revokes it), then drop it from the catalog.

        Revoked first: agents holding a queued or scheduled copy must refuse it even
        though the manifest is gone. The revocation outlives the manifest; re-uploading
        the job does not unrevoke it (``unrevoke`` does).
        """
        require_slug(job_id, "job_id")
        bus = self._bus()
        job = await JobCatalog(bus).require(job_id)
        revoked = await self.revoke(job_id, reason="job deleted", actor=actor)
        jobs = await bus.kv(subjects.KV_JOBS)
        await jobs.delete(job_id)
        await self._audit(bus, "job_delete", actor, {"job_id": job_id, "version": job.version})
        return {
            "job_id": job_id,
            "version": job.version,
            "deleted": True,
            "revoked": True,
            "revoked_at": revoked["revoked_at"],
        }

    # --- kill ----------------------------------------------------------------------------
    async def kill(self, exec_id: str, *, actor: str) -> dict[str, Any]:
        """End the exec's running scripts and cancel its queued copies (SPEC §4.5).

        1. the exec becomes ``cancelled`` where the transition table allows it — first,
           so the killed results (which may be projected within milliseconds) find it
           already in a state they cannot move it out of; a ``kanade.exec.cancelled``
           record keeps the operator's decision in KANADE_EXECS;
        2. a core-NATS kill broadcast: agents end the running tree (exit -1) and skip
           copies queued in their local limiter;
        3. copies still waiting in the command stream for offline agents are deleted:
           the stream keeps one message per subject, so for each subject the exec
           published to, the last message is this exec's iff its exec_id matches.
        """
        row = await self._db.read(lambda conn: reads.get_execution(conn, exec_id))
        if row is None:
            raise NotFound(f"execution {exec_id!r} not found", exec_id=exec_id)
        bus = self._bus()
        now = self._clock()
        previous = str(row["status"])
        status = await self._mark_cancelled(exec_id, previous, now)
        if status == "cancelled":
            record = {"exec_id": exec_id, "status": "cancelled", "at": _iso(now), "by": actor}
            try:
                await bus.publish_js(
                    subjects.exec_subject("cancelled", exec_id),
                    _dumps(record),
                    msg_id=f"exec-cancelled:{exec_id}",
                )
            except Exception:
                log.exception("cancel record not written", exec_id=exec_id)

        await bus.nc.publish(subjects.KILL_SUBJECT, _dumps({"exec_id": exec_id}))
        await bus.nc.flush(timeout=5)

        target = Target.model_validate(row["target"])
        cancelled: list[str] = []
        for subject in command_subjects(target, str(row["job_id"])):
            if await self._cancel_queued(bus, subject, exec_id, row.get("request_id")):
                cancelled.append(subject)
        await self._audit(
            bus,
            "kill",
            actor,
            {"exec_id": exec_id, "job_id": row["job_id"], "cancelled_queued": cancelled},
        )
        log.info(
            "exec killed",
            exec_id=exec_id,
            actor=actor,
            cancelled_queued=len(cancelled),
            status=status,
        )
        return {
            "exec_id": exec_id,
            "job_id": row["job_id"],
            "previous_status": previous,
            "status": status,
            "kill_sent": True,
            "cancelled_queued": len(cancelled),
            "cancelled_subjects": cancelled,
        }

    async def _mark_cancelled(self, exec_id: str, current: str, now: datetime) -> str:
        """Move the exec to ``cancelled`` if the table allows it; the status it has after."""
        if current == "cancelled":
            return current
        if not can_transition(current, "cancelled"):
            return current
        if await self._db.write(
            lambda conn: writes.apply_exec_status(conn, exec_id, "cancelled", now)
        ):
            return "cancelled"
        # It moved on meanwhile (e.g. completed): report what it is now.
        fresh = await self._db.read(lambda conn: reads.get_execution(conn, exec_id))
        return str(fresh["status"]) if fresh else current

    async def _cancel_queued(
        self, bus: Bus, subject: str, exec_id: str, request_id: str | None
    ) -> bool:
        try:
            msg = await bus.js.get_last_msg(subjects.STREAM_COMMANDS, subject)
        except JsNotFoundError:
            return False  # nothing queued (never published, expired, or already deleted)
        try:
            cmd = decode(Command, msg.data or b"")
        except WireDecodeError:
            return False
        if cmd.exec_id != exec_id and (request_id is None or cmd.request_id != request_id):
            return False  # a newer exec of the same job superseded ours: not ours to cancel
        if msg.seq is None:
            return False
        try:
            return bool(await bus.js.delete_msg(subjects.STREAM_COMMANDS, msg.seq))
        except JsNotFoundError:
            return False

    # --- ping ----------------------------------------------------------------------------
    async def ping(self, pc_id: str, *, timeout: float) -> dict[str, Any]:
        require_slug(pc_id, "pc_id")
        bus = self._bus()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            msg = await bus.nc.request(subjects.ping_subject(pc_id), b"", timeout=timeout)
        except (NatsTimeoutError, NoRespondersError, TimeoutError):
            raise TimedOut(
                f"no answer from {pc_id} in {timeout:g} s", pc_id=pc_id, timeout=timeout
            ) from None
        rtt_ms = (loop.time() - t0) * 1000.0
        try:
            hb = decode(Heartbeat, msg.data)
        except WireDecodeError as exc:
            raise Corrupt(f"{pc_id} answered with an unreadable heartbeat: {exc}") from None
        return {**hb.model_dump(mode="json", by_alias=True), "rtt_ms": round(rtt_ms, 3)}

    # --- config layers ---------------------------------------------------------------------
    @staticmethod
    def _layer(scope: str, name: str | None) -> str:
        if scope == "global":
            if name:
                raise Invalid("the global layer has no name: use /api/config/global")
            return "global"
        if scope not in ("group", "pc"):
            raise Invalid.at("scope", f"{scope!r} is not one of global, group, pc")
        if not name:
            raise Invalid(f"the {scope} layer needs a name: /api/config/{scope}/<name>")
        require_slug(name, scope)
        return layer_key(scope, name)

    async def layers(self) -> dict[str, dict[str, Any]]:
        kv = await self._bus().kv(subjects.KV_CONFIG)
        out: dict[str, dict[str, Any]] = {}
        for key in await _keys(kv):
            value = _json_or((await _kv_read(kv, key)).value, None)
            if isinstance(value, dict):
                out[key] = value
        return out

    async def get_layer(self, scope: str, name: str | None) -> dict[str, Any]:
        key = self._layer(scope, name)
        kv = await self._bus().kv(subjects.KV_CONFIG)
        value = _json_or((await _kv_read(kv, key)).value, {})
        return {"layer": key, "settings": value if isinstance(value, dict) else {}}

    async def set_layer(
        self, scope: str, name: str | None, settings: dict[str, Any], *, actor: str
    ) -> dict[str, Any]:
        """Merge ``settings`` into the layer (a null value removes that key)."""
        key = self._layer(scope, name)
        if not settings:
            raise Invalid('no settings given: send an object like {"heartbeat_interval": 10}')
        clean: dict[str, Any] = {}
        removed: list[str] = []
        errors: list[dict[str, str]] = []
        for k, v in settings.items():
            if v is None:
                removed.append(k)
                continue
            try:
                clean[k] = validate_setting(k, v)
            except ValueError as exc:
                path, _, reason = str(exc).partition(": ")
                errors.append({"path": path or k, "reason": reason or str(exc)})
        if errors:
            raise Invalid(f"invalid setting for layer {key}", errors=errors)

        def mutate(raw: bytes | None) -> bytes | None:
            layer = _json_or(raw, {})
            layer = dict(layer) if isinstance(layer, dict) else {}
            for k in removed:
                layer.pop(k, None)
            layer.update(clean)
            return _dumps(layer) if layer else None

        bus = self._bus()
        kv = await bus.kv(subjects.KV_CONFIG)
        _, new = await _kv_cas(kv, key, mutate)
        await self._audit(
            bus, "config_set", actor, {"layer": key, "settings": clean, "removed": removed}
        )
        log.info("config layer changed", layer=key, settings=clean, removed=removed, actor=actor)
        return {"layer": key, "settings": _json_or(new, {})}

    async def unset(
        self, scope: str, name: str | None, keys: list[str], *, actor: str
    ) -> dict[str, Any]:
        """Remove ``keys`` from the layer, or the whole layer when ``keys`` is empty."""
        key = self._layer(scope, name)

        def mutate(raw: bytes | None) -> bytes | None:
            if not keys:
                return None
            layer = _json_or(raw, {})
            layer = dict(layer) if isinstance(layer, dict) else {}
            for k in keys:
                layer.pop(k, None)
            return _dumps(layer) if layer else None

        bus = self._bus()
        kv = await bus.kv(subjects.KV_CONFIG)
        old, new = await _kv_cas(kv, key, mutate)
        old_layer = _json_or(old, {})
        gone = (
            sorted(set(old_layer) - set(_json_or(new, {}))) if isinstance(old_layer, dict) else []
        )
        await self._audit(bus, "config_unset", actor, {"layer": key, "keys": keys or ["*"]})
        log.info("config layer changed", layer=key, unset=keys or ["*"], actor=actor)
        return {"layer": key, "settings": _json_or(new, {}), "removed": gone}

    async def effective(self, pc_id: str) -> dict[str, Any]:
        """What the agent ``pc_id`` applies: built-in defaults → global → groups → pc.

        Its groups are those of its last heartbeat (static ``--group`` flags included)
        plus its membership in KV (which the agent follows live)."""
        require_slug(pc_id, "pc_id")
        bus = self._bus()
        agent = await self._db.read(lambda conn: reads.get_agent(conn, pc_id))
        reported = list(agent.get("groups") or []) if agent else []
        kv_groups = _group_list((await _kv_read(await bus.kv(subjects.KV_GROUPS), pc_id)).value)
        groups = sorted(set(reported) | set(kv_groups))
        layers = await self.layers()
        eff = effective_config(layers, pc_id=pc_id, groups=groups)
        applied = ["global", *(f"group.{g}" for g in groups), f"pc.{pc_id}"]
        return {
            "pc_id": pc_id,
            "known_agent": agent is not None,
            "groups": groups,
            "values": eff.values,
            "sources": eff.sources,
            "warnings": eff.warnings,
            "layers": {k: layers[k] for k in applied if k in layers},
            # The agent applies its own config file / flags in place of "default".
            "note": "values from 'default' are replaced by the agent's local config file "
            "or flags where it sets them",
        }

    # --- groups ----------------------------------------------------------------------------
    async def groups(self) -> dict[str, Any]:
        """Membership from KV, and every group agents report in their heartbeats."""
        bus = self._bus()
        kv = await bus.kv(subjects.KV_GROUPS)
        membership: dict[str, list[str]] = {}
        for key in await _keys(kv):
            groups = _group_list((await _kv_read(kv, key)).value)
            if groups:
                membership[key] = groups
        agents = await self._db.read(reads.list_agents)
        reported = {str(a["pc_id"]): list(a.get("groups") or []) for a in agents}
        names = {g for gs in membership.values() for g in gs} | {
            g for gs in reported.values() for g in gs
        }
        items = []
        for g in sorted(names):
            items.append(
                {
                    "group": g,
                    "members": sorted(pc for pc, gs in membership.items() if g in gs),
                    "reported": sorted(pc for pc, gs in reported.items() if g in gs),
                }
            )
        return {"items": items, "total": len(items), "membership": membership}

    async def set_groups(self, pc_id: str, groups: list[str], *, actor: str) -> dict[str, Any]:
        require_slug(pc_id, "pc_id")
        for g in groups:
            require_slug(g, "group")
        wanted = sorted(set(groups))
        return await self._change_membership(
            pc_id, lambda _old: wanted, actor=actor, action={"set": wanted}
        )

    async def add_members(self, group: str, pcs: list[str], *, actor: str) -> dict[str, Any]:
        require_slug(group, "group")
        if not pcs:
            raise Invalid.at("pcs", "list at least one pc")
        out = []
        for pc in pcs:
            require_slug(pc, "pc_id")
        for pc in pcs:
            out.append(
                await self._change_membership(
                    pc, lambda old: sorted({*old, group}), actor=actor, action={"add": group}
                )
            )
        return {"group": group, "items": out}

    async def remove_member(self, group: str, pc_id: str, *, actor: str) -> dict[str, Any]:
        require_slug(group, "group")
        require_slug(pc_id, "pc_id")
        return await self._change_membership(
            pc_id,
            lambda old: [g for g in old if g != group],
            actor=actor,
            action={"remove": group},
        )

    async def _change_membership(
        self,
        pc_id: str,
        change: Callable[[list[str]], list[str]],
        *,
        actor: str,
        action: dict[str, Any],
    ) -> dict[str, Any]:
        bus = self._bus()
        kv = await bus.kv(subjects.KV_GROUPS)

        def mutate(raw: bytes | None) -> bytes | None:
            new = sorted(set(change(_group_list(raw))))
            if not new:
                return None
            encoded = _dumps(new)
            # Keep the stored bytes when nothing changed (no needless KV write).
            return raw if raw is not None and _group_list(raw) == new else encoded

        old, new = await _kv_cas(kv, pc_id, mutate)
        before, after = _group_list(old), _group_list(new)
        if before != after:
            await self._audit(
                bus,
                "group_set",
                actor,
                {"pc_id": pc_id, "before": before, "after": after, **action},
            )
            log.info("group membership changed", pc_id=pc_id, before=before, after=after)
        return {"pc_id": pc_id, "groups": after, "previous": before, "changed": before != after}

    # --- full output -------------------------------------------------------------------------
    async def output(self, result_id: str, stream: OutputStream) -> bytes:
        row = await self._db.read(lambda conn: reads.get_result(conn, result_id))
        if row is None:
            raise NotFound(f"result {result_id!r} not found", result_id=result_id)
        ref = row.get(f"{stream}_ref")
        if not ref:
            return str(row.get(stream) or "").encode()
        store = await self._bus().obj(subjects.OBJ_OUTPUTS)
        try:
            obj = await store.get(str(ref))
        except JsNotFoundError:
            raise NotFound(
                f"the full {stream} of result {result_id!r} ({ref}) is no longer in the "
                f"outputs store; the inline head is in GET /api/results/{result_id}",
                result_id=result_id,
                ref=ref,
            ) from None
        return bytes(obj.data or b"")


async def _keys(kv: KeyValue) -> list[str]:
    try:
        return sorted(await kv.keys())
    except NoKeysError:
        return []
