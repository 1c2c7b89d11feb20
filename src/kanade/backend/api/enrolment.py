"""``/api/agents/enroll-tokens``, ``/api/enroll``, ``/api/agents/enrolled`` and
``/api/agents/{pc_id}/revoke`` (SPEC §8.1).

``POST /api/enroll`` is the one mutating route without user auth: the one-time token in
its body is the credential (policy.py). The others are admin-only.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.params import PcId, TokenId
from kanade.backend.api.request_context import request_actor
from kanade.backend.api.schemas.enrolment import (
    AgentRevoked,
    EnrolledList,
    Grant,
    TokenCancelled,
    TokenCreated,
    TokenList,
)

router = APIRouter(prefix="/api", tags=["enrolment"])


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    groups: list[str] = Field(default_factory=list, description="groups the pc joins")
    expires: str | None = Field(
        default=None, description="how long the token stays usable, e.g. 1h (default 1h, max 7d)"
    )


class EnrollBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(description="the one-time enrolment token")
    pc_id: str = Field(description="this machine's pc id")
    public_key: str = Field(description="the agent's nkey user public key ('U…')")


@router.post("/agents/enroll-tokens", response_model=TokenCreated)
async def create_token(
    request: Request, services: ServicesDep, body: TokenBody | None = None
) -> dict[str, Any]:
    """A single-use enrolment token; the secret is in this answer only."""
    body = body or TokenBody()
    return await services.enrolment.create_token(
        groups=body.groups, expires=body.expires, actor=request_actor(request)
    )


@router.get("/agents/enroll-tokens", response_model=TokenList)
async def list_tokens(services: ServicesDep) -> dict[str, Any]:
    """Tokens still usable (not used, cancelled or expired), without their secret."""
    items = await services.enrolment.tokens()
    return {"items": items, "total": len(items)}


@router.delete("/agents/enroll-tokens/{token_id}", response_model=TokenCancelled)
async def cancel_token(
    token_id: TokenId, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Cancel a token (``was_open`` says whether it could still have been used)."""
    return await services.enrolment.cancel_token(token_id, actor=request_actor(request))


@router.get("/agents/enrolled", response_model=EnrolledList)
async def list_enrolled(services: ServicesDep) -> dict[str, Any]:
    """Every enrolled pc, ``active`` or ``revoked``."""
    items = await services.enrolment.enrolled()
    return {"items": items, "total": len(items)}


@router.post("/agents/{pc_id}/revoke", response_model=AgentRevoked)
async def revoke_agent(pc_id: PcId, request: Request, services: ServicesDep) -> dict[str, Any]:
    """Cut the pc off the broker within seconds; its reconnects are refused."""
    return await services.enrolment.revoke(pc_id, actor=request_actor(request))


@router.post("/enroll", response_model=Grant)
async def enroll(body: EnrollBody, services: ServicesDep) -> dict[str, Any]:
    """Trade a one-time token for this pc's broker credential (no user auth: the token is
    the credential). 401 for an unknown token, 410 for a used, cancelled or expired one."""
    return await services.enrolment.enroll(
        token=body.token, pc_id=body.pc_id, public_key=body.public_key
    )
