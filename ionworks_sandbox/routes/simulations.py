"""/simulations: protocol simulations (single and DOE batch) run by the job workers with PyBaMM.

As Ionworks does, a run identical to one the project already holds (same model, protocol, inputs, design,
extra variables and study), finished or still running, is returned again (``already_existed``) instead of
being started a second time; a failed or canceled one is run anew.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import RedirectResponse

from ..errors import ApiError, bad_request, not_found, unprocessable
from ..handlers import SIMULATION
from ..jobs import FAILED, TERMINAL
from .deps import Caller, Objects, Records, owned, project_of
from .jobs import Runner
from .models import resolve_model
from .protocols import template_of

router = APIRouter()
#: The most ids one ``POST /simulations/statuses`` answers for (the client pages its requests by this).
MAX_STATUS_IDS = 1000
#: The most simulations one batch request may expand to (the sandbox's own bound; it runs them all locally).
MAX_BATCH_RUNS = 10_000
#: Record kind holding, for each run key, the simulation that ran it (the key is its id: one indexed look-up).
RUN_KEY = "simulation_run_key"
_STATES = {"pending": "queued", "running": "running", "completed": "completed", "failed": "failed", "canceled": "canceled"}


def _runs(body: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, float]]]:
    """``(experiment_parameters, design_parameters)`` for every simulation the request expands to."""
    from ..compute.doe import expand_doe

    base = dict((body.get("experiment_parameter_sets") or [{}])[0] or {})
    conditions = body.get("conditions")
    planned = len(conditions) if isinstance(conditions, list) else _doe_run_count(body.get("design_parameters_doe"))
    if planned > MAX_BATCH_RUNS:
        field = "conditions" if isinstance(conditions, list) else "design_parameters_doe"
        raise unprocessable(
            f"{field}: the batch expands to {planned} simulations; at most {MAX_BATCH_RUNS} per request",
            {"field": field, "count": planned, "max_count": MAX_BATCH_RUNS},
        )
    try:
        if conditions:
            return [
                ({**base, **(c.get("experiment_parameters") or {})}, dict(c.get("design_parameters") or {}))
                for c in conditions
            ]
        designs = expand_doe(body.get("design_parameters_doe"), None, seed=body.get("seed", 0))
    except (ValueError, TypeError) as exc:
        raise unprocessable(f"design_parameters_doe: {exc}", {"field": "design_parameters_doe"}) from exc
    return [(base, design) for design in designs] or [(base, {})]


def _doe_run_count(doe: Any) -> int:
    """How many runs a DOE asks for, counted as the client does, before anything is expanded."""
    if not isinstance(doe, dict):
        return 1
    if doe.get("sampling") != "grid":
        return doe["count"] if isinstance(doe.get("count"), int) else 1
    total = 1
    for row in doe.get("rows") or []:
        if isinstance(row, dict):
            size = len(row["values"]) if isinstance(row.get("values"), list) else row.get("count")
            total *= size if isinstance(size, int) and size > 0 else 1
    return total


def _view(record: dict[str, Any], runner: Runner) -> dict[str, Any]:
    job = runner.get(record["job_id"])
    done = job["status"] == "completed"
    output = job.get("output") or {}
    return {
        **record,
        "simulation_id": record["id"],
        "status": _STATES[job["status"]],
        "error": job.get("error"),
        "is_terminal": job["status"] in TERMINAL,
        "storage_folder": output.get("storage_folder") if done else None,
        "metrics": output.get("metrics") if done else None,
        "termination": output.get("termination"),
    }


def _check_study(store: Records, caller: Caller, study_id: Any, project_id: str) -> None:
    """A study the simulations join must be the caller's and in their project (404 / 400 otherwise)."""
    if study_id is None:
        return
    study = owned(store, caller, "study", str(study_id), "Study")
    if study["project_id"] != project_id:
        raise bad_request(f"study_id '{study_id}' is not a study of project '{project_id}'", {"field": "study_id"})


@router.post("/simulations/with-template/batch")
def create_simulations(body: dict[str, Any], caller: Caller, store: Records, runner: Runner) -> list[dict[str, Any]]:
    from ..compute.ucp import find_input_references

    template = template_of(store, caller, body.get("experiment_template_id"))
    project = project_of(store, caller, body.get("project_id") or template.get("project_id"))
    _check_study(store, caller, body.get("study_id"), project["id"])
    model = resolve_model(body.get("parameterized_model"), store, caller)
    runs = _runs(body)
    inputs = find_input_references(template["source_protocol"])
    for experiment_parameters, _ in runs:
        missing = [name for name in inputs if name not in experiment_parameters]
        if missing:
            raise unprocessable(
                f"experiment_parameters: the protocol needs input {missing[0]!r} but it was not given",
                {"field": "experiment_parameters", "missing": missing},
            )
    created = []
    for experiment_parameters, design_parameters in runs:
        key = _run_key(project["id"], template["id"], model, experiment_parameters, design_parameters, body)
        if (existing := _held_run(store, caller, key, runner)) is not None:
            created.append({"simulation_id": existing["id"], "job_id": existing["job_id"],
                            "protocol_id": template["id"], "already_existed": True})
            continue
        simulation_id = str(uuid.uuid4())
        job = runner.submit(
            "simulate",
            SIMULATION,
            {
                "model": model,
                "protocol": template["source_protocol"],
                "experiment_parameters": experiment_parameters,
                "design_parameters": design_parameters,
                "extra_variables": body.get("extra_variables"),
                "storage_folder": f"simulations/{simulation_id}",
            },
            org_id=caller.org_id,
        )
        store.insert(
            "simulation",
            {
                "name": template["name"],
                "job_id": job["id"],
                "project_id": project["id"],
                "protocol_id": template["id"],
                "experiment_template_id": template["id"],
                "parameterized_model_id": body["parameterized_model"] if isinstance(body.get("parameterized_model"), str) else None,
                "parameterized_model": model,
                "experiment_parameters": experiment_parameters,
                "design_parameters": design_parameters,
                "study_id": body.get("study_id"),
            },
            org_id=caller.org_id,
            project_id=project["id"],
            id=simulation_id,
        )
        _hold_run(store, caller, key, simulation_id, project["id"])
        created.append({"simulation_id": simulation_id, "job_id": job["id"], "protocol_id": template["id"],
                        "already_existed": False})
    return created


def _run_key(project_id: str, template_id: str, model: Any, experiment_parameters: dict[str, Any],
             design_parameters: dict[str, Any], body: dict[str, Any]) -> str:
    """What makes two simulation runs of a project the same run."""
    identity = [project_id, template_id, model, experiment_parameters, design_parameters,
                body.get("extra_variables"), body.get("study_id")]
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _held_run(store: Records, caller: Caller, key: str, runner: Runner) -> dict[str, Any] | None:
    """The simulation of this run key that finished or is still running, if the project holds one."""
    marker = store.find(RUN_KEY, key, org_id=caller.org_id)
    simulation = marker and store.find("simulation", marker["simulation_id"], org_id=caller.org_id)
    if not simulation:
        return None
    try:
        status = runner.get(simulation["job_id"])["status"]
    except ApiError:
        return None
    return simulation if status not in FAILED else None


def _hold_run(store: Records, caller: Caller, key: str, simulation_id: str, project_id: str) -> None:
    store.delete(RUN_KEY, key)  # a failed or deleted run of this key, replaced
    store.insert(RUN_KEY, {"simulation_id": simulation_id}, org_id=caller.org_id, project_id=project_id, id=key)


@router.get("/simulations")
def list_simulations(
    caller: Caller,
    store: Records,
    runner: Runner,
    parameterized_model_id: str | None = None,
    study_id: str | None = None,
    experiment_template_id: str | None = None,
    state: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    if not (parameterized_model_id or study_id or experiment_template_id):
        raise ApiError(400, "BAD_REQUEST", "Give parameterized_model_id, study_id or experiment_template_id")
    wanted = {"parameterized_model_id": parameterized_model_id, "study_id": study_id, "experiment_template_id": experiment_template_id}
    records = [
        r for r in store.list("simulation", org_id=caller.org_id)
        if all(value is None or r.get(key) == value for key, value in wanted.items())
    ]
    views = [v for v in (_view(r, runner) for r in records) if state is None or v["status"] == state]
    return {"simulations": views[offset : offset + limit], "model_scalar_parameters": {}, "total": len(views)}


@router.get("/simulations/{simulation_id}")
def get_simulation(simulation_id: str, caller: Caller, store: Records, runner: Runner) -> dict[str, Any]:
    return _view(owned(store, caller, "simulation", simulation_id, "Simulation"), runner)


def _download(simulation_id: str, name: str, caller: Caller, store: Records, storage: Objects, runner: Runner) -> RedirectResponse:
    view = _view(owned(store, caller, "simulation", simulation_id, "Simulation"), runner)
    if not view["storage_folder"]:
        raise not_found("Simulation result", simulation_id)
    return RedirectResponse(storage.signed_url(f"{view['storage_folder']}/{name}"), status_code=307)


@router.get("/simulations/{simulation_id}/time_series/download")
def download_time_series(simulation_id: str, caller: Caller, store: Records, storage: Objects, runner: Runner) -> RedirectResponse:
    return _download(simulation_id, "time_series.parquet", caller, store, storage, runner)


@router.get("/simulations/{simulation_id}/steps/download")
def download_steps(simulation_id: str, caller: Caller, store: Records, storage: Objects, runner: Runner) -> RedirectResponse:
    return _download(simulation_id, "steps.parquet", caller, store, storage, runner)


@router.post("/simulations/statuses")
def simulation_statuses(body: dict[str, Any], caller: Caller, store: Records, runner: Runner) -> list[dict[str, Any]]:
    ids, limit = body.get("simulation_ids") or [], body.get("limit")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > MAX_STATUS_IDS:
        raise unprocessable(
            f"simulation_ids must be a list of at most {MAX_STATUS_IDS} ids", {"field": "simulation_ids"}
        )
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise unprocessable("limit must be a positive integer", {"field": "limit"})
    statuses = []
    for simulation_id in ids:
        record = store.find("simulation", simulation_id, org_id=caller.org_id)
        if record is None:
            continue
        job = runner.get(record["job_id"])
        statuses.append(
            {"simulation_id": simulation_id, "status": job["status"], "error": job.get("error"),
             "error_code": job.get("error_code"), "updated_at": job["updated_at"]}
        )
    return statuses[:limit]


@router.delete("/simulations/{simulation_id}")
def delete_simulation(simulation_id: str, caller: Caller, store: Records, storage: Objects, runner: Runner) -> None:
    record = owned(store, caller, "simulation", simulation_id, "Simulation")
    runner.delete(record["job_id"])
    storage.delete_prefix(f"simulations/{simulation_id}")
    store.delete("simulation", simulation_id)
