"""Dependency helpers: the app's :class:`Services` from the request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from kanade.backend.services.container import Services


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]
