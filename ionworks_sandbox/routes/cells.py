"""/cell_specifications and /cell_instances: the cell hierarchy above measurements.

Names are unique per project (specifications) and per specification (instances); a duplicate answers
409 ``CONFLICT`` with ``detail.existing_id`` so the client's ``create_or_get`` returns the existing record.
Deleting a specification or an instance deletes everything under it, stored files included.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Request

from ..auth import Principal
from ..errors import bad_request, conflict
from ..query import filter_records
from ..storage import Storage
from ..store import Store
from .deps import Caller, Objects, Paging, Records, owned, project_of, require
from .measurements import delete_instance_measurements

router = APIRouter()

SLOTS = ("anode", "cathode", "electrolyte", "separator", "case")
_READ_ONLY = ("id", "created_at", "updated_at", "organization_id", "project_id", "cell_specification_id")
_SPEC_FILTERS = ("name", "form_factor", "manufacturer", "created_by_email", "created_at", "updated_at")
_INSTANCE_FILTERS = ("name", "batch_id", "created_by_email", "created_at", "updated_at")
_STAMPS = ("id", "created_at", "updated_at")
_names = threading.Lock()


def _check_writable(body: dict[str, Any]) -> None:
    for field in _READ_ONLY:
        if field in body:
            raise bad_request(f"Field '{field}' cannot be changed", {"field": field})
    if "name" in body and body["name"] in (None, ""):
        raise bad_request("Field 'name' must not be empty", {"field": "name"})


def _given(body: dict[str, Any]) -> dict[str, Any]:
    """A create body without the fields the server assigns (a record read back can be posted again)."""
    return {k: v for k, v in body.items() if k not in _STAMPS}


def _spec(store: Store, caller: Principal, spec_id: str) -> dict[str, Any]:
    return owned(store, caller, "cell_specification", spec_id, "Cell specification")


def _instance(store: Store, caller: Principal, instance_id: str) -> dict[str, Any]:
    return owned(store, caller, "cell_instance", instance_id, "Cell instance")


def _spec_name_taken(store: Store, project_id: str, name: str, own_id: str | None = None) -> None:
    for other in store.list("cell_specification", project_id=project_id, name=name):
        if other["id"] != own_id:
            raise conflict(f"Cell specification '{name}' already exists in project '{project_id}'", other["id"])


def _instance_name_taken(store: Store, spec_id: str, name: str, own_id: str | None = None) -> None:
    for other in store.list("cell_instance", parent_id=spec_id, name=name):
        if other["id"] != own_id:
            raise conflict(f"Cell instance '{name}' already exists in this cell specification", other["id"])


def _materials(spec: dict[str, Any]) -> dict[str, str]:
    """``{slot: material_id}`` for the component slots that name a material."""
    found = {}
    for slot in SLOTS:
        component = spec.get(slot)
        if isinstance(component, dict) and component.get("material_id"):
            found[slot] = str(component["material_id"])
    return found


def _material_match(spec: dict[str, Any], request: Request) -> bool:
    """The material reverse-lookups: any slot (``material_id``/``material_ids``) or per slot (OR across slots)."""
    params = request.query_params
    materials = _materials(spec)
    wanted_any = set(params.getlist("material_ids")) | set(params.getlist("material_id"))
    per_slot = {slot: params[f"{slot}_material_id"] for slot in SLOTS if f"{slot}_material_id" in params}
    if not wanted_any and not per_slot:
        return True
    if wanted_any & set(materials.values()):
        return True
    return any(materials.get(slot) == material for slot, material in per_slot.items())


# ---- cell specifications ------------------------------------------------------------------------------


@router.post("/cell_specifications")
def create_spec(body: dict[str, Any], caller: Caller, store: Records) -> dict[str, Any]:
    name = require(body, "name")
    project = project_of(store, caller, body.get("project_id"))
    fields = {
        **_given(body),
        "name": name,
        "project_id": project["id"],
        "organization_id": caller.org_id,
        "created_by_email": f"sandbox@{caller.org.name}.local",
    }
    with _names:
        _spec_name_taken(store, project["id"], name)
        return store.insert("cell_specification", fields, org_id=caller.org_id, project_id=project["id"])


@router.get("/cell_specifications")
def list_specs(
    request: Request,
    caller: Caller,
    store: Records,
    page: Paging,
    project_id: str | None = None,
    exclude_cell_spec_id: str | None = None,
) -> dict[str, Any]:
    if project_id is not None:
        project_of(store, caller, project_id)
    specs = store.list("cell_specification", org_id=caller.org_id, project_id=project_id)
    specs = filter_records(specs, dict(request.query_params), _SPEC_FILTERS)
    specs = [s for s in specs if s["id"] != exclude_cell_spec_id and _material_match(s, request)]
    return page.envelope(specs)


@router.get("/cell_specifications/{spec_id}")
def get_spec(spec_id: str, caller: Caller, store: Records) -> dict[str, Any]:
    return _spec(store, caller, spec_id)


@router.patch("/cell_specifications/{spec_id}")
def update_spec(spec_id: str, body: dict[str, Any], caller: Caller, store: Records) -> dict[str, Any]:
    spec = _spec(store, caller, spec_id)
    _check_writable(body)
    with _names:
        if "name" in body:
            _spec_name_taken(store, spec["project_id"], body["name"], spec_id)
        return store.update("cell_specification", spec_id, body)


@router.delete("/cell_specifications/{spec_id}", status_code=204)
def delete_spec(spec_id: str, caller: Caller, store: Records, storage: Objects) -> None:
    _spec(store, caller, spec_id)
    for instance in store.list("cell_instance", parent_id=spec_id):
        _delete_instance(store, storage, instance["id"])
    store.delete("cell_specification", spec_id)


# ---- cell instances -----------------------------------------------------------------------------------


@router.post("/cell_specifications/{spec_id}/cell_instances")
def create_instance(spec_id: str, body: dict[str, Any], caller: Caller, store: Records) -> dict[str, Any]:
    spec = _spec(store, caller, spec_id)
    name = require(body, "name")
    if "batch" in body:
        raise bad_request("Field 'batch' was removed: pass 'batch_id' of a cell batch instead", {"field": "batch"})
    fields = {
        **_given(body),
        "name": name,
        "cell_specification_id": spec_id,
        "project_id": spec["project_id"],
        "organization_id": caller.org_id,
        "created_by_email": f"sandbox@{caller.org.name}.local",
        **_batch_fields(store, caller, spec_id, body.get("batch_id")),
    }
    with _names:
        _instance_name_taken(store, spec_id, name)
        return store.insert(
            "cell_instance", fields, org_id=caller.org_id, project_id=spec["project_id"], parent_id=spec_id
        )


def _batch_fields(store: Store, caller: Principal, spec_id: str, batch_id: str | None) -> dict[str, Any]:
    """``batch_id``/``batch_name`` for an instance; 400 unless the batch is the caller's and the specification's."""
    if batch_id is None:
        return {"batch_id": None, "batch_name": None}
    batch = store.find("cell_batch", str(batch_id), org_id=caller.org_id)
    if batch is None or batch.get("cell_specification_id") != spec_id:
        raise bad_request(
            f"batch_id '{batch_id}' is not a batch of cell specification '{spec_id}'", {"field": "batch_id"}
        )
    return {"batch_id": batch["id"], "batch_name": batch.get("name")}


@router.get("/cell_specifications/{spec_id}/cell_instances")
def list_instances(
    spec_id: str,
    request: Request,
    caller: Caller,
    store: Records,
    page: Paging,
) -> dict[str, Any]:
    _spec(store, caller, spec_id)
    instances = filter_records(
        store.list("cell_instance", parent_id=spec_id), dict(request.query_params), _INSTANCE_FILTERS
    )
    return page.envelope(instances)


@router.get("/cell_instances/{instance_id}")
def get_instance(instance_id: str, caller: Caller, store: Records) -> dict[str, Any]:
    return _instance(store, caller, instance_id)


@router.patch("/cell_instances/{instance_id}")
def update_instance(instance_id: str, body: dict[str, Any], caller: Caller, store: Records) -> dict[str, Any]:
    instance = _instance(store, caller, instance_id)
    _check_writable(body)
    if "batch" in body:
        raise bad_request("Field 'batch' was removed: pass 'batch_id' of a cell batch instead", {"field": "batch"})
    changes = dict(body)
    if "batch_id" in body:
        changes.update(_batch_fields(store, caller, instance["cell_specification_id"], body["batch_id"]))
    with _names:
        if "name" in body:
            _instance_name_taken(store, instance["cell_specification_id"], body["name"], instance_id)
        return store.update("cell_instance", instance_id, changes)


@router.delete("/cell_instances/{instance_id}", status_code=204)
def delete_instance(instance_id: str, caller: Caller, store: Records, storage: Objects) -> None:
    _instance(store, caller, instance_id)
    _delete_instance(store, storage, instance_id)


def _delete_instance(store: Store, storage: Storage, instance_id: str) -> None:
    delete_instance_measurements(store, storage, instance_id)
    store.delete("cell_instance", instance_id)
