"""/simple_pipelines: one data fit or validation (plus helper entries) run as a single job."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from ..errors import bad_request, unprocessable
from ..handlers import PIPELINE
from ..query import filter_records, order_and_page
from .deps import Caller, Objects, Records, owned, project_of
from .jobs import Runner
from .submissions import check_elements, job_state, job_status, resolve_measurements

router = APIRouter()
_FILTERS = ("name", "description", "status", "created_by_email", "created_at", "updated_at")
_MAIN_ELEMENTS = {"data_fit", "array_data_fit", "validation"}


def _flat_result(record: dict[str, Any], job: dict[str, Any]) -> dict[str, Any] | None:
    """The main element's raw result with a flat ``parameter_values`` dict (plus ``summary_stats``)."""
    if job["status"] != "completed":
        return None
    output = job.get("output") or {}
    results = output.get("element_results") or {}
    main = record.get("main_element")
    result = dict(results.get(main) or {}) if main else {}
    if not result.get("parameter_values"):
        result["parameter_values"] = (output.get("result") or {}).get("parameter_values", {})
    return result


def _view(record: dict[str, Any], runner: Runner) -> dict[str, Any]:
    state = job_state(runner, record["job_id"])
    job = state.pop("job")
    view = {k: v for k, v in record.items() if k not in ("config", "main_element")}
    return {**view, **state, "result": _flat_result(record, job)}


@router.post("/simple_pipelines")
def create_simple_pipeline(
    body: dict[str, Any], caller: Caller, store: Records, storage: Objects, runner: Runner
) -> dict[str, Any]:
    project = project_of(store, caller, body.get("project_id"))
    config = body.get("config")
    if not isinstance(config, dict):
        raise unprocessable("Field 'config' must be an object with 'elements'")
    elements = check_elements(config.get("elements"))
    main = [name for name, element in elements.items() if element.get("element_type") in _MAIN_ELEMENTS]
    if len(main) > 1:
        raise unprocessable(
            f"A simple pipeline holds at most one data_fit or validation element; got {len(main)}: {', '.join(main)}",
            {"field": "config.elements", "elements": main},
        )
    measurements = resolve_measurements(elements, store, storage, caller)
    job = runner.submit("pipeline", PIPELINE, {"elements": elements, "measurements": measurements}, org_id=caller.org_id)
    record = store.insert(
        "simple_pipeline",
        {
            "name": body.get("name") or "Untitled simple pipeline",
            "description": body.get("description"),
            "project_id": project["id"],
            "organization_id": caller.org_id,
            "user_id": caller.org_id,
            "created_by_email": f"sandbox@{caller.org.name}.local",
            "options": body.get("options") or {},
            "config": {"elements": elements},
            "config_path": None,
            "main_element": main[0] if main else None,
            "job_id": job["id"],
        },
        org_id=caller.org_id,
        project_id=project["id"],
    )
    return _view(record, runner)


@router.get("/simple_pipelines")
def list_simple_pipelines(
    request: Request,
    caller: Caller,
    store: Records,
    runner: Runner,
    project_id: str | None = None,
    limit: int = Query(10, ge=1, le=100),
    offset: int = Query(0, ge=0),
    order_by: str | None = None,
    order: str | None = None,
) -> dict[str, Any]:
    project = project_of(store, caller, project_id)
    records = store.list("simple_pipeline", org_id=caller.org_id, project_id=project["id"])
    # Filter on the status fields alone; only the page's records read their job's result.
    views = [{**r, **job_status(runner, r["job_id"])} for r in records]
    views = filter_records(views, dict(request.query_params), _FILTERS)
    page = [_view(r, runner) for r in order_and_page(views, order_by, order, offset, limit)]
    return {"items": page, "count": len(page), "total": len(views)}


@router.get("/simple_pipelines/{simple_pipeline_id}")
def get_simple_pipeline(simple_pipeline_id: str, caller: Caller, store: Records, runner: Runner) -> dict[str, Any]:
    return _view(owned(store, caller, "simple_pipeline", simple_pipeline_id, "Simple pipeline"), runner)


@router.patch("/simple_pipelines/{simple_pipeline_id}")
def update_simple_pipeline(
    simple_pipeline_id: str, body: dict[str, Any], caller: Caller, store: Records, runner: Runner
) -> dict[str, Any]:
    owned(store, caller, "simple_pipeline", simple_pipeline_id, "Simple pipeline")
    changes = {k: body[k] for k in ("name", "description") if k in body}
    if not changes:
        raise bad_request("Give 'name' or 'description' to update")
    return _view(store.update("simple_pipeline", simple_pipeline_id, changes), runner)


@router.post("/simple_pipelines/{simple_pipeline_id}/cancel")
def cancel_simple_pipeline(simple_pipeline_id: str, caller: Caller, store: Records, runner: Runner) -> dict[str, Any]:
    record = owned(store, caller, "simple_pipeline", simple_pipeline_id, "Simple pipeline")
    runner.cancel(record["job_id"])
    return _view(record, runner)


@router.delete("/simple_pipelines/{simple_pipeline_id}")
def delete_simple_pipeline(simple_pipeline_id: str, caller: Caller, store: Records, runner: Runner) -> None:
    record = owned(store, caller, "simple_pipeline", simple_pipeline_id, "Simple pipeline")
    runner.delete(record["job_id"])
    store.delete("simple_pipeline", simple_pipeline_id)
