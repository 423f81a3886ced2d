"""/projects/{project_id}/studies: studies grouping simulations and measurements."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from ..errors import ApiError
from ..query import filter_records
from .deps import Caller, Paging, Records, envelope, owned, project_of, require

router = APIRouter(prefix="/projects/{project_id}/studies")


def _study(store: Records, caller: Caller, project_id: str, study_id: str) -> dict[str, Any]:
    project_of(store, caller, project_id)
    study = owned(store, caller, "study", study_id, "Study")
    if study["project_id"] != project_id:
        raise ApiError(404, "NOT_FOUND", f"Study '{study_id}' not found")
    return study


def _with_counts(store: Records, study: dict[str, Any]) -> dict[str, Any]:
    links = store.list("study_link", parent_id=study["id"])
    simulations = sum(1 for link in links if link["target_kind"] == "simulation")
    return {**study, "simulation_count": simulations, "measurement_count": len(links) - simulations, "validation_count": 0}


@router.get("")
def list_studies(
    project_id: str,
    request: Request,
    caller: Caller,
    store: Records,
    page: Paging,
) -> dict[str, Any]:
    project_of(store, caller, project_id)
    studies = filter_records(store.list("study", org_id=caller.org_id, project_id=project_id), dict(request.query_params), ["name"])
    listed = page.envelope(studies)
    return {**listed, "items": [_with_counts(store, s) for s in listed["items"]]}


@router.post("")
def create_study(project_id: str, body: dict[str, Any], caller: Caller, store: Records) -> dict[str, Any]:
    project_of(store, caller, project_id)
    name = require(body, "name")
    fields = {"name": name, "description": body.get("description"), "project_id": project_id}
    return _with_counts(store, store.insert("study", fields, org_id=caller.org_id, project_id=project_id))


@router.get("/{study_id}")
def get_study(project_id: str, study_id: str, caller: Caller, store: Records) -> dict[str, Any]:
    return _with_counts(store, _study(store, caller, project_id, study_id))


@router.patch("/{study_id}")
def update_study(project_id: str, study_id: str, body: dict[str, Any], caller: Caller, store: Records) -> dict[str, Any]:
    _study(store, caller, project_id, study_id)
    changes = {k: body[k] for k in ("name", "description") if k in body}
    return _with_counts(store, store.update("study", study_id, changes))


@router.delete("/{study_id}")
def delete_study(project_id: str, study_id: str, caller: Caller, store: Records) -> None:
    _study(store, caller, project_id, study_id)
    for link in store.list("study_link", parent_id=study_id):
        store.delete("study_link", link["id"])
    store.delete("study", study_id)


def _link(store: Records, caller: Caller, project_id: str, study_id: str, kind: str, target_id: str) -> dict[str, Any]:
    _study(store, caller, project_id, study_id)
    owned(store, caller, kind, target_id, kind.replace("_", " ").capitalize())
    for link in store.list("study_link", parent_id=study_id):
        if link["target_id"] == target_id:
            return link
    fields = {"study_id": study_id, "target_kind": kind.removeprefix("cell_"), "target_id": target_id}
    return store.insert("study_link", fields, org_id=caller.org_id, project_id=project_id, parent_id=study_id)


def _unlink(store: Records, caller: Caller, project_id: str, study_id: str, target_id: str) -> None:
    _study(store, caller, project_id, study_id)
    for link in store.list("study_link", parent_id=study_id):
        if link["target_id"] == target_id:
            store.delete("study_link", link["id"])


@router.post("/{study_id}/simulations/{simulation_id}")
def assign_simulation(project_id: str, study_id: str, simulation_id: str, caller: Caller, store: Records) -> dict[str, Any]:
    link = _link(store, caller, project_id, study_id, "simulation", simulation_id)
    store.update("simulation", simulation_id, {"study_id": study_id})
    return link


@router.delete("/{study_id}/simulations/{simulation_id}")
def remove_simulation(project_id: str, study_id: str, simulation_id: str, caller: Caller, store: Records) -> None:
    _unlink(store, caller, project_id, study_id, simulation_id)


@router.post("/{study_id}/measurements/{measurement_id}")
def assign_measurement(project_id: str, study_id: str, measurement_id: str, caller: Caller, store: Records) -> dict[str, Any]:
    return _link(store, caller, project_id, study_id, "cell_measurement", measurement_id)


@router.get("/{study_id}/measurements")
def list_study_measurements(
    project_id: str,
    study_id: str,
    caller: Caller,
    store: Records,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    _study(store, caller, project_id, study_id)
    ids = [l["target_id"] for l in store.list("study_link", parent_id=study_id) if l["target_kind"] == "measurement"]
    records = [m for m in (store.find("cell_measurement", i, org_id=caller.org_id) for i in ids) if m is not None]
    return envelope(records[offset : offset + limit], len(records))


@router.delete("/{study_id}/measurements/{measurement_id}")
def remove_measurement(project_id: str, study_id: str, measurement_id: str, caller: Caller, store: Records) -> None:
    _unlink(store, caller, project_id, study_id, measurement_id)
