"""Authentication: ``X-API-Key`` or ``Authorization: Bearer`` must match a configured key."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from .errors import ApiError
from .settings import Organization


@dataclass(frozen=True)
class Principal:
    """The organization a request acts for."""

    org: Organization

    @property
    def org_id(self) -> str:
        return self.org.id


async def authenticate(request: Request) -> Principal:
    """FastAPI dependency: the caller's organization, or 401 in the client's error body.

    ``async`` so FastAPI resolves it on the event loop instead of handing it to its thread pool.
    """
    organizations: dict[str, Organization] = request.app.state.settings.organizations
    key = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization", "")
    if not key and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    if not key:
        raise ApiError(401, "UNAUTHORIZED", "Missing credentials: send X-API-Key or Authorization: Bearer")
    org = organizations.get(key)
    if org is None:
        raise ApiError(401, "UNAUTHORIZED", "Invalid API key")
    return Principal(org=org)
