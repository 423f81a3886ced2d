"""Shared FastAPI dependencies and helpers for route modules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from ..auth import Principal, authenticate
from ..errors import bad_request, not_found
from ..query import order_and_page
from ..storage import Storage
from ..store import Store
from ..uploads import PendingUploads

Caller = Annotated[Principal, Depends(authenticate)]


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_storage(request: Request) -> Storage:
    return request.app.state.storage


async def get_uploads(request: Request) -> PendingUploads:
    return request.app.state.uploads


Records = Annotated[Store, Depends(get_store)]
Objects = Annotated[Storage, Depends(get_storage)]
Uploads = Annotated[PendingUploads, Depends(get_uploads)]


def project_of(store: Store, caller: Principal, project_id: str | None) -> dict[str, Any]:
    """The caller's project ``project_id`` (default project when ``None``); 404 if another org owns it."""
    pid = project_id or caller.org.default_project_id
    project = store.find("project", pid, org_id=caller.org_id)
    if project is None:
        raise not_found("Project", pid)
    return project


def owned(store: Store, caller: Principal, kind: str, id_: str, label: str) -> dict[str, Any]:
    """A record of ``kind`` the caller's organization owns; 404 otherwise (never reveals others' records)."""
    return store.get(kind, id_, org_id=caller.org_id, label=label)


def envelope(items: list[Any], total: int, key: str = "items") -> dict[str, Any]:
    """The list response the client parses: ``{key: [...], "count": n, "total": N}``."""
    return {key: items, "count": len(items), "total": total}


def require(body: dict[str, Any], field: str) -> Any:
    """``body[field]``, or 400 naming the missing field."""
    if body.get(field) in (None, ""):
        raise bad_request(f"Field '{field}' is required")
    return body[field]


@dataclass
class Page:
    """The paging and ordering query parameters every ``items`` list takes.

    Example:
        >>> def list_things(page: Paging): return page.envelope(records)
    """

    limit: int = Query(100, ge=1, le=1000)
    offset: int = Query(0, ge=0)
    order_by: str | None = None
    order: str | None = None

    def envelope(self, records: list[Any], default_order: str = "desc") -> dict[str, Any]:
        """``records`` ordered and sliced, in the ``{"items", "count", "total"}`` envelope."""
        page = order_and_page(records, self.order_by, self.order or default_order, self.offset, self.limit)
        return envelope(page, len(records))


Paging = Annotated[Page, Depends()]
