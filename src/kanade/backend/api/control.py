"""Stop controls and fleet state: revoke, kill, ping, agent config layers, groups, full output.

Mutating routes publish an audit record with the actor (``request.state.actor`` when
an auth layer set it, else ``anonymous``). Role checks are applied centrally.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.params import ExecId, GroupName, JobId, LayerName, PcId, ResultId, Scope
from kanade.backend.api.request_context import is_admin, request_actor
from kanade.backend.api.schemas.control import (
    ConfigLayer,
    ConfigLayers,
    ConfigUnset,
    EffectiveConfig,
    GroupList,
    JobDeleted,
    Killed,
    MembersAdded,
    Membership,
    Pong,
    RevocationList,
    Revoked,
    Unrevoked,
)
from kanade.core.bounds import MAX_LIST_ITEMS, Slug

router = APIRouter(prefix="/api", tags=["control"])


class RevokeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000, description="why, for the audit")


class GroupsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    groups: list[Slug] = Field(
        max_length=MAX_LIST_ITEMS, description="the pc's complete KV group membership"
    )


class MembersBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Typed here, before anything looks a name up: an empty or malformed pc id is a 400
    # naming the item, never a KV lookup the broker refuses (a 503).
    pcs: list[Slug] = Field(
        min_length=1, max_length=MAX_LIST_ITEMS, description="pcs to add to the group"
    )


SettingsBody = Annotated[
    dict[str, Any],
    Body(
        description='settings to merge into the layer, e.g. {"heartbeat_interval": 10}; '
        "a null value removes that key",
        examples=[{"heartbeat_interval": 10, "max_local_concurrent": 2}],
    ),
]
SettingName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Keys = Annotated[
    list[SettingName] | None, Query(description="keys to remove; none = the whole layer")
]
Force = Annotated[
    bool, Query(description="accept a pc, group or job nothing knows (refused otherwise)")
]


# --- revocations and job delete -----------------------------------------------------------
@router.post("/jobs/{job_id}/revoke", response_model=Revoked)
async def revoke_job(
    job_id: JobId,
    request: Request,
    services: ServicesDep,
    body: RevokeBody | None = None,
    force: Force = False,
) -> dict[str, Any]:
    """Revoke a job: every agent skips it (exit 126), even offline ones once they return.
    A job not in the catalog is refused with its close matches unless ``force`` (revoking
    ahead of an upload)."""
    await services.known.check_one("job", job_id, "job_id", force=force)
    return await services.revocations.revoke(
        job_id, reason=body.reason if body else None, actor=request_actor(request)
    )


@router.post("/jobs/{job_id}/unrevoke", response_model=Unrevoked)
async def unrevoke_job(job_id: JobId, request: Request, services: ServicesDep) -> dict[str, Any]:
    """Lift a revocation (idempotent: ``was_revoked`` tells whether there was one)."""
    return await services.revocations.unrevoke(job_id, actor=request_actor(request))


@router.get("/revocations", response_model=RevocationList)
async def list_revocations(services: ServicesDep) -> dict[str, Any]:
    items = await services.revocations.revocations()
    return {"items": items, "total": len(items)}


@router.delete("/jobs/{job_id}", response_model=JobDeleted)
async def delete_job(job_id: JobId, request: Request, services: ServicesDep) -> dict[str, Any]:
    """Delete a job from the catalog; it is revoked first (SPEC §4.5). A job that requires
    approval may only be deleted by an admin (else re-creating it would drop the gate)."""
    return await services.revocations.delete_job(
        job_id, actor=request_actor(request), is_admin=is_admin(request)
    )


# --- kill and ping ------------------------------------------------------------------------
@router.post("/executions/{exec_id}/kill", response_model=Killed)
async def kill_execution(
    exec_id: ExecId, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """End the exec's running scripts (exit -1), cancel its queued copies, mark it cancelled."""
    return await services.kills.kill(exec_id, actor=request_actor(request))


@router.post("/agents/{pc_id}/ping", response_model=Pong)
async def ping_agent(
    pc_id: PcId,
    services: ServicesDep,
    timeout: Annotated[float, Query(gt=0, le=60, description="seconds")] = 5.0,
) -> dict[str, Any]:
    """A fresh heartbeat by request/reply; 504 when the agent does not answer in time (or
    is not connected at all); 400 with the closest pc ids for a pc nothing knows."""
    await services.known.check_one("pc", pc_id, "pc_id", overridable=False)
    return await services.pings.ping(pc_id, timeout=timeout)


# --- config layers ------------------------------------------------------------------------
@router.get("/config", response_model=ConfigLayers)
async def list_config(services: ServicesDep) -> dict[str, Any]:
    """Every config layer in KV (``global``, ``group.<g>``, ``pc.<pc_id>``)."""
    layers = await services.agent_config.layers()
    return {"layers": layers, "total": len(layers)}


@router.get("/config/{scope}", response_model=ConfigLayer)
async def get_config(scope: Scope, services: ServicesDep) -> dict[str, Any]:
    return await services.agent_config.get_layer(scope, None)


@router.get("/config/{scope}/{name}", response_model=ConfigLayer)
async def get_named_config(scope: Scope, name: LayerName, services: ServicesDep) -> dict[str, Any]:
    return await services.agent_config.get_layer(scope, name)


@router.put("/config/{scope}", response_model=ConfigLayer)
async def put_config(
    scope: Scope, settings: SettingsBody, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Merge settings into a layer; 400 names each invalid key and the reason."""
    return await services.agent_config.set_layer(
        scope, None, settings, actor=request_actor(request)
    )


@router.put("/config/{scope}/{name}", response_model=ConfigLayer)
async def put_named_config(
    scope: Scope,
    name: LayerName,
    settings: SettingsBody,
    request: Request,
    services: ServicesDep,
    force: Force = False,
) -> dict[str, Any]:
    """Merge settings into a group's or a pc's layer; a group or pc nothing knows is
    refused with its close matches unless ``force``."""
    if scope in ("group", "pc"):
        await services.known.check_one(
            "group" if scope == "group" else "pc", name, "name", force=force
        )
    return await services.agent_config.set_layer(
        scope, name, settings, actor=request_actor(request)
    )


@router.delete("/config/{scope}", response_model=ConfigUnset)
async def delete_config(
    scope: Scope, request: Request, services: ServicesDep, key: Keys = None
) -> dict[str, Any]:
    return await services.agent_config.unset(scope, None, key or [], actor=request_actor(request))


@router.delete("/config/{scope}/{name}", response_model=ConfigUnset)
async def delete_named_config(
    scope: Scope, name: LayerName, request: Request, services: ServicesDep, key: Keys = None
) -> dict[str, Any]:
    return await services.agent_config.unset(scope, name, key or [], actor=request_actor(request))


@router.get("/agents/{pc_id}/config", response_model=EffectiveConfig)
async def agent_config(pc_id: PcId, services: ServicesDep) -> dict[str, Any]:
    """The effective config of one agent, with the layer each value comes from."""
    return await services.agent_config.effective(pc_id)


# --- groups -------------------------------------------------------------------------------
@router.get("/groups", response_model=GroupList)
async def list_groups(services: ServicesDep) -> dict[str, Any]:
    """Groups with their KV ``members`` and the agents that ``reported`` them."""
    return await services.groups.groups()


@router.put("/groups/{pc_id}", response_model=Membership)
async def set_groups(
    pc_id: PcId, body: GroupsBody, request: Request, services: ServicesDep, force: Force = False
) -> dict[str, Any]:
    """Set a pc's whole KV membership (static ``--group`` flags of the agent stay); a pc
    nothing knows is refused with its close matches unless ``force``."""
    await services.known.check_one("pc", pc_id, "pc_id", force=force)
    return await services.groups.set_groups(pc_id, body.groups, actor=request_actor(request))


@router.post("/groups/{group}/members", response_model=MembersAdded)
async def add_group_members(
    group: GroupName,
    body: MembersBody,
    request: Request,
    services: ServicesDep,
    force: Force = False,
) -> dict[str, Any]:
    """Add pcs to a group (a new group name is fine); a pc nothing knows is refused with
    its close matches unless ``force``."""
    await services.known.check_pcs(body.pcs, "pcs", force=force)
    return await services.groups.add_members(group, body.pcs, actor=request_actor(request))


@router.delete("/groups/{group}/members/{pc_id}", response_model=Membership)
async def remove_group_member(
    group: GroupName, pc_id: PcId, request: Request, services: ServicesDep
) -> dict[str, Any]:
    return await services.groups.remove_member(group, pc_id, actor=request_actor(request))


# --- full output --------------------------------------------------------------------------
@router.get(
    "/results/{result_id}/output/{stream}",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "the complete output"}},
)
async def result_output(
    result_id: ResultId, stream: Literal["stdout", "stderr"], services: ServicesDep
) -> Response:
    """The FULL stdout or stderr of a result (the API's result rows hold a capped head)."""
    data = await services.outputs.output(result_id, stream)
    return Response(content=data, media_type="text/plain; charset=utf-8")
