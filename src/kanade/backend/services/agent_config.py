"""Agent config layers in KV (SPEC §3.7) and the effective config of one agent.

Bucket ``kanade_config``: keys ``global``, ``group.<g>``, ``pc.<pc_id>``, each a JSON
object of settings validated by :func:`kanade.core.agentconfig.validate_setting`.
Changes are compare-and-sets on the key's revision (no lost update between two
operators); every change is audited.
"""

from __future__ import annotations

from typing import Any, Literal

import structlog

from kanade.backend.errors import Invalid
from kanade.backend.messaging.audit import publish_audit
from kanade.backend.services import kvwrite
from kanade.backend.services.base import Service
from kanade.backend.services.groups import kv_groups_of
from kanade.backend.services.slugs import require_slug
from kanade.backend.store import agents
from kanade.bus import kvcas
from kanade.bus.kvsnapshot import kv_snapshot
from kanade.core import subjects
from kanade.core.agentconfig import effective_config, from_text, layer_key, validate_setting

log = structlog.get_logger(__name__)

ConfigScope = Literal["global", "group", "pc"]


def layer_of(scope: str, name: str | None) -> str:
    """The KV key of a layer named in a route (``/api/config/<scope>[/<name>]``)."""
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


def _as_layer(raw: bytes | None) -> dict[str, Any]:
    layer = kvcas.json_or(raw, {})
    return dict(layer) if isinstance(layer, dict) else {}


class AgentConfigService(Service):
    async def layers(self) -> dict[str, dict[str, Any]]:
        # A snapshot, not kv.keys(): that is a KV watcher, a broker consumer per read.
        snapshot = await kv_snapshot(self._bus().js, subjects.KV_CONFIG)
        out: dict[str, dict[str, Any]] = {}
        for key, (raw, _) in sorted(snapshot.items()):
            value = kvcas.json_or(raw, None)
            if isinstance(value, dict):
                out[key] = value
        return out

    async def get_layer(self, scope: str, name: str | None) -> dict[str, Any]:
        key = layer_of(scope, name)
        kv = await self._bus().kv(subjects.KV_CONFIG)
        value = kvcas.json_or((await kvcas.read(kv, key)).value, {})
        return {"layer": key, "settings": value if isinstance(value, dict) else {}}

    async def set_layer(
        self, scope: str, name: str | None, settings: dict[str, Any], *, actor: str
    ) -> dict[str, Any]:
        """Merge ``settings`` into the layer (a null value removes that key)."""
        key = layer_of(scope, name)
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
                clean[k] = validate_setting(k, from_text(k, v))
            except ValueError as exc:
                path, _, reason = str(exc).partition(": ")
                errors.append({"path": path or k, "reason": reason or str(exc)})
        if errors:
            raise Invalid(f"invalid setting for layer {key}", errors=errors)

        def mutate(raw: bytes | None) -> bytes | None:
            layer = _as_layer(raw)
            for k in removed:
                layer.pop(k, None)
            layer.update(clean)
            return kvcas.dumps(layer) if layer else None

        kv = await self._bus().kv(subjects.KV_CONFIG)
        done = await kvwrite.change(kv, key, mutate)
        await publish_audit(
            self._bus,
            "config_set",
            actor,
            {"layer": key, "settings": clean, "removed": removed},
            at=self._clock(),
        )
        log.info("config layer changed", layer=key, settings=clean, removed=removed, actor=actor)
        return {"layer": key, "settings": kvcas.json_or(done.new, {})}

    async def unset(
        self, scope: str, name: str | None, keys: list[str], *, actor: str
    ) -> dict[str, Any]:
        """Remove ``keys`` from the layer, or the whole layer when ``keys`` is empty."""
        key = layer_of(scope, name)

        def mutate(raw: bytes | None) -> bytes | None:
            if not keys:
                return None
            layer = _as_layer(raw)
            for k in keys:
                layer.pop(k, None)
            return kvcas.dumps(layer) if layer else None

        kv = await self._bus().kv(subjects.KV_CONFIG)
        done = await kvwrite.change(kv, key, mutate)
        old_layer = kvcas.json_or(done.old, {})
        gone = (
            sorted(set(old_layer) - set(kvcas.json_or(done.new, {})))
            if isinstance(old_layer, dict)
            else []
        )
        await publish_audit(
            self._bus,
            "config_unset",
            actor,
            {"layer": key, "keys": keys or ["*"]},
            at=self._clock(),
        )
        log.info("config layer changed", layer=key, unset=keys or ["*"], actor=actor)
        return {"layer": key, "settings": kvcas.json_or(done.new, {}), "removed": gone}

    async def effective(self, pc_id: str) -> dict[str, Any]:
        """What the agent ``pc_id`` applies: built-in defaults → global → groups → pc.

        Its groups are those of its last heartbeat (static ``--group`` flags included)
        plus its membership in KV (which the agent follows live)."""
        require_slug(pc_id, "pc_id")
        bus = self._bus()
        agent = await self._db.read(lambda conn: agents.get_agent(conn, pc_id))
        reported = list(agent.get("groups") or []) if agent else []
        groups = sorted(set(reported) | set(await kv_groups_of(bus, pc_id)))
        layers = await self.layers()
        local = agent.get("local_config") if agent else None
        eff = effective_config(
            layers, pc_id=pc_id, groups=groups, local=local if isinstance(local, dict) else None
        )
        applied = ["global", *(f"group.{g}" for g in groups), f"pc.{pc_id}"]
        return {
            "pc_id": pc_id,
            "known_agent": agent is not None,
            "groups": groups,
            "values": eff.values,
            "sources": eff.sources,
            "warnings": eff.warnings,
            "layers": {k: layers[k] for k in applied if k in layers},
            "note": "source 'local': what the agent was started with (a flag or its config "
            "file), as its heartbeat reports; a KV layer overrides it",
        }
