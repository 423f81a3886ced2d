"""/pipelines: submit a pipeline of elements, follow it, read its result and per-element state."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query, Request, Response

from ..errors import bad_request
from ..handlers import PIPELINE
from ..query import filter_records, order_and_page
from .deps import Caller, Objects, Records, owned, project_of
from .jobs import Runner, element_job_id
from .submissions import ELEMENT_LABELS, check_elements, job_status, require_job_output, resolve_measurements

router = APIRouter()
#: Filters on the stored record's own fields. ``status`` comes from the pipeline's job, so it is derived only for
#: the records these keep: a read by id costs the ids asked for, not the project's every pipeline.
_RECORD_FILTERS = ("id", "name", "description", "created_by_email", "created_at", "updated_at")
_ELEMENTS_WITH_JOBS = {"data_fit", "array_data_fit", "validation"}


def _view(record: dict[str, Any], runner: Runner) -> dict[str, Any]:
    state = job_status(runner, record["job_id"])
    state.pop("error_code")
    return {**{k: v for k, v in record.items() if k != "config"}, **state}


@router.post("/pipelines")
def create_pipeline(body: dict[str, Any], caller: Caller, store: Records, storage: Objects, runner: Runner) -> dict[str, Any]:
    project = project_of(store, caller, body.get("project_id"))
    elements = check_elements(body.get("elements"))
    measurements = resolve_measurements(elements, store, storage, caller)
    job = runner.submit(
        "pipeline", PIPELINE, {"elements": elements, "measurements": measurements}, org_id=caller.org_id
    )
    record = store.insert(
        "pipeline",
        {
            "name": body.get("name") or "Untitled pipeline",
            "description": body.get("description"),
            "project_id": project["id"],
            "organization_id": caller.org_id,
            "created_by_email": f"sandbox@{caller.org.name}.local",
            "options": body.get("options") or {},
            "config": {"elements": elements},
            "job_id": job["id"],
        },
        org_id=caller.org_id,
        project_id=project["id"],
    )
    return _view(record, runner)


@router.get("/pipelines")
def list_pipelines(
    request: Request,
    caller: Caller,
    store: Records,
    runner: Runner,
    project_id: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    skip: int = Query(0, ge=0),
    order_by: str | None = None,
    order: str | None = None,
) -> dict[str, Any]:
    project = project_of(store, caller, project_id)
    params = dict(request.query_params)
    records = filter_records(store.list("pipeline", org_id=caller.org_id, project_id=project["id"]), params,
                             _RECORD_FILTERS)
    views = filter_records([_view(r, runner) for r in records], params, ("status",))
    return {"pipelines": order_and_page(views, order_by, order, skip, limit), "total": len(views)}


@router.get("/pipelines/{pipeline_id}")
def get_pipeline(pipeline_id: str, caller: Caller, store: Records, runner: Runner) -> dict[str, Any]:
    return _view(owned(store, caller, "pipeline", pipeline_id, "Pipeline"), runner)


@router.patch("/pipelines/{pipeline_id}")
def update_pipeline(pipeline_id: str, body: dict[str, Any], caller: Caller, store: Records, runner: Runner) -> dict[str, Any]:
    owned(store, caller, "pipeline", pipeline_id, "Pipeline")
    changes = {k: body[k] for k in ("name", "description") if k in body}
    if not changes:
        raise bad_request("Give 'name' or 'description' to update")
    return _view(store.update("pipeline", pipeline_id, changes), runner)


def _json(payload: Any) -> Response:
    """A JSON answer encoded as it is: a fit's results are plain JSON already, and checking them against
    ``dict[str, Any]`` costs more than encoding them (tens of ms for a fit with an OCP curve)."""
    return Response(json.dumps(payload, allow_nan=False), media_type="application/json")


@router.get("/pipelines/{pipeline_id}/result")
def get_pipeline_result(pipeline_id: str, caller: Caller, store: Records, runner: Runner) -> Response:
    record = owned(store, caller, "pipeline", pipeline_id, "Pipeline")
    output = require_job_output(runner, record["job_id"], "Pipeline", pipeline_id)
    return _json({"result": output.get("result") or {}, "element_results": output.get("element_results") or {}})


def element_views(record: dict[str, Any], job: dict[str, Any]) -> list[dict[str, Any]]:
    """Each element of a pipeline record with its status, progress, result and error from the pipeline's job."""
    pipeline_id = record["id"]
    output = job.get("output") or {}
    states = output.get("element_states") or (job.get("progress") or {}).get("elements") or {}
    results = output.get("element_results") or {}
    elements = []
    for index, (name, config) in enumerate(record["config"]["elements"].items()):
        kind = config.get("element_type", "")
        state = states.get(name, {})
        status = state.get("status", "pending")
        if job["status"] in {"failed", "canceled"} and status in {"pending", "running"}:
            status = "skipped" if status == "pending" else job["status"]
        elements.append(
            {
                "id": f"{pipeline_id}.{index}",
                "pipeline_id": pipeline_id,
                "name": name,
                "element_order": index,
                "element_type": ELEMENT_LABELS.get(kind, kind),
                "status": status,
                "job_id": element_job_id(job["id"], index) if kind in _ELEMENTS_WITH_JOBS else None,
                "job_status": job["status"],
                "progress": state.get("progress"),
                "result": results.get(name),
                "error": state.get("error"),
                "created_at": record["created_at"],
                "updated_at": job["updated_at"],
                "organization_id": record["organization_id"],
            }
        )
    return elements


@router.get("/pipelines/{pipeline_id}/elements")
def list_pipeline_elements(pipeline_id: str, caller: Caller, store: Records, runner: Runner) -> Response:
    record = owned(store, caller, "pipeline", pipeline_id, "Pipeline")
    return _json(element_views(record, runner.get(record["job_id"])))


@router.post("/pipelines/{pipeline_id}/cancel")
def cancel_pipeline(pipeline_id: str, caller: Caller, store: Records, runner: Runner) -> dict[str, Any]:
    record = owned(store, caller, "pipeline", pipeline_id, "Pipeline")
    runner.cancel(record["job_id"])
    return _view(record, runner)


@router.delete("/pipelines/{pipeline_id}")
def delete_pipeline(pipeline_id: str, caller: Caller, store: Records, runner: Runner) -> None:
    record = owned(store, caller, "pipeline", pipeline_id, "Pipeline")
    runner.delete(record["job_id"])
    store.delete("pipeline", pipeline_id)
