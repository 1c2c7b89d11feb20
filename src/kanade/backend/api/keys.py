"""``/api/keys``: the command-signing keys (SPEC §8.2); admin only (the role table)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.request_context import request_actor
from kanade.backend.api.schemas.keys import KeysRotated, SigningKeys
from kanade.backend.api.schemas.requests import RotateKeysBody
from kanade.backend.errors import Unavailable
from kanade.backend.services.container import Services
from kanade.backend.services.keys import SigningKeyService

router = APIRouter(prefix="/api", tags=["keys"])


def _keys(services: Services) -> SigningKeyService:
    if services.keys is None:
        raise Unavailable("this backend has no signing keys", broker=False)
    return services.keys


@router.get("/keys", response_model=SigningKeys)
async def keys_list(services: ServicesDep) -> dict[str, Any]:
    """The active key id and every key still kept (with its retire instant)."""
    return _keys(services).current()


@router.post("/keys/rotate", response_model=KeysRotated)
async def keys_rotate(
    body: RotateKeysBody, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """A new active key; agents trust the previous one for ``overlap`` more."""
    return await _keys(services).rotate(overlap=body.overlap, actor=request_actor(request))
