"""Health, identity and projects."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..query import filter_records
from .deps import Caller, Paging, Records, project_of, require

router = APIRouter()


@router.get("/healthz")
def healthz() -> dict[str, Any]:
    return {"status": "ok", "service": "ionworks-sandbox"}


@router.get("/users/me")
def whoami(caller: Caller) -> dict[str, Any]:
    org = {"id": caller.org_id, "name": caller.org.name}
    return {
        "id": caller.org_id,
        "email": f"sandbox@{caller.org.name}.local",
        "authorized_organization": org,
        "organizations": [org],
        "default_project_id": caller.org.default_project_id,
    }


@router.get("/projects")
def list_projects(
    caller: Caller,
    store: Records,
    page: Paging,
    name: str | None = None,
) -> dict[str, Any]:
    projects = store.list("project", org_id=caller.org_id)
    if name is not None:
        projects = filter_records(projects, {"name": name}, ["name"])
    return page.envelope(projects, default_order="asc")


@router.get("/projects/{project_id}")
def get_project(project_id: str, caller: Caller, store: Records) -> dict[str, Any]:
    return project_of(store, caller, project_id)


@router.post("/projects")
def create_project(body: dict[str, Any], caller: Caller, store: Records) -> dict[str, Any]:
    name = require(body, "name")
    fields = {"name": name, "description": body.get("description"), "organization_id": caller.org_id}
    return store.insert("project", fields, org_id=caller.org_id)
