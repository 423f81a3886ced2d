"""/parameterized_models: stored models, and the SPM/SPMe/DFN Chen2020 models every organization has."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from ..errors import ApiError, bad_request, not_found, unprocessable
from .deps import Caller, Records, envelope, owned, project_of, require

router = APIRouter()

BASE_MODELS = ("SPM", "SPMe", "DFN")
BUILTIN = {
    f"{model.lower()}-chen2020": {"name": f"{model} (Chen2020)", "model_id": model, "parameters": "Chen2020"}
    for model in BASE_MODELS
}


def _builtin_view(model_id: str) -> dict[str, Any]:
    return {"id": model_id, **BUILTIN[model_id], "builtin": True, "simulation_settings": None}


def _lookup(store: Records, caller: Caller, model_id: str) -> dict[str, Any]:
    if model_id in BUILTIN:
        return _builtin_view(model_id)
    record = store.find("parameterized_model", model_id, org_id=caller.org_id)
    if record is None:
        raise not_found("Parameterized model", model_id)
    return record


def resolve_model(value: Any, store: Records, caller: Caller) -> dict[str, Any]:
    """Turn any ``parameterized_model`` form the client sends into ``{"type", "options", "parameter_set", "parameters"}``."""
    if isinstance(value, str):
        value = _lookup(store, caller, value)
    if not isinstance(value, dict):
        raise unprocessable("parameterized_model must be an id or an object")
    if "quick_model" in value:
        raise ApiError(
            422,
            "UNSUPPORTED",
            "parameterized_model.quick_model (equivalent-circuit quick models) is not supported by the sandbox; "
            f"use one of {', '.join(BUILTIN)} or {{'model_id': 'SPMe', 'parameters': {{...}}}}",
            {"field": "parameterized_model.quick_model", "supported": [*BUILTIN, *BASE_MODELS]},
        )
    base_id = value.get("model_id") or value.get("type")
    config = value.get("config") or {}
    own_model = isinstance(base_id, str) and store.find("parameterized_model", base_id, org_id=caller.org_id) is not None
    if base_id in BUILTIN or own_model:
        base = resolve_model(base_id, store, caller)
    elif base_id in BASE_MODELS:
        base = {"type": base_id, "options": config.get("options") or value.get("options") or {}, "parameter_set": "Chen2020", "parameters": {}}
    else:
        raise ApiError(
            422,
            "UNSUPPORTED",
            f"parameterized_model.model_id {base_id!r} is not supported; supported: {', '.join((*BASE_MODELS, *BUILTIN))}",
            {"field": "parameterized_model.model_id", "value": base_id, "supported": [*BASE_MODELS, *BUILTIN]},
        )
    parameters = value.get("parameters")
    if isinstance(parameters, str):
        return {**base, "parameter_set": parameters}
    overrides = dict(base.get("parameters") or {})
    for name, number in (parameters or {}).items():
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise unprocessable(
                f"parameterized_model.parameters[{name!r}]: only numeric values are supported by the sandbox",
                {"field": f"parameterized_model.parameters.{name}"},
            )
        overrides[name] = float(number)
    return {**base, "parameters": overrides}


@router.post("/parameterized_models")
@router.post("/cells/{cell_spec_id}/parameterized_models")
def create_parameterized_model(body: dict[str, Any], caller: Caller, store: Records, cell_spec_id: str | None = None) -> dict[str, Any]:
    name = require(body, "name")
    project = _project_for(store, caller, cell_spec_id, body.get("project_id"))
    model = resolve_model({k: body.get(k) for k in ("model_id", "parameters", "config")}, store, caller)
    fields = {
        "name": name,
        "description": body.get("description"),
        "model_id": body["model_id"],
        "project_id": project["id"],
        "cell_specification_id": cell_spec_id,
        "simulation_settings": body.get("simulation_settings"),
        "type": model["type"],
        "options": model.get("options") or {},
        "parameter_set": model.get("parameter_set"),
        "parameters": model.get("parameters") or {},
    }
    return store.insert("parameterized_model", fields, org_id=caller.org_id, project_id=project["id"], parent_id=cell_spec_id)


def _project_for(store: Records, caller: Caller, cell_spec_id: str | None, project_id: str | None) -> dict[str, Any]:
    """The project a new model goes to: its cell specification's (which the caller must own), else ``project_id``."""
    if cell_spec_id is None:
        return project_of(store, caller, project_id)
    spec = owned(store, caller, "cell_specification", cell_spec_id, "Cell specification")
    if project_id not in (None, spec["project_id"]):
        raise bad_request(
            f"project_id '{project_id}' is not the project of cell specification '{cell_spec_id}'",
            {"field": "project_id"},
        )
    return project_of(store, caller, spec["project_id"])


@router.get("/parameterized_models")
def list_parameterized_models(
    caller: Caller, store: Records, project_id: str | None = None, limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)
) -> dict[str, Any]:
    project = project_of(store, caller, project_id)
    models = [_builtin_view(m) for m in BUILTIN] + store.list("parameterized_model", org_id=caller.org_id, project_id=project["id"])
    return envelope(models[offset : offset + limit], len(models))


@router.get("/parameterized_models/{model_id}")
def get_parameterized_model(model_id: str, caller: Caller, store: Records) -> dict[str, Any]:
    return _lookup(store, caller, model_id)


@router.get("/parameterized_models/{model_id}/parameter-values")
def get_parameter_values(model_id: str, caller: Caller, store: Records) -> dict[str, Any]:
    import pybamm

    model = resolve_model(model_id, store, caller)
    values = pybamm.ParameterValues(model.get("parameter_set") or "Chen2020")
    scalars = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {**scalars, **(model.get("parameters") or {})}
