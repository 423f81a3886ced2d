"""/protocols and /experiment_templates: validate, inspect, save and convert UCP protocols."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml
from fastapi import APIRouter, Query

from ..errors import ApiError, conflict, not_found, unprocessable
from .deps import Caller, Records, envelope, project_of, require

router = APIRouter()


def _protocol_text(value: Any, field: str) -> str:
    if isinstance(value, dict):
        return yaml.safe_dump(value, sort_keys=False)
    if not isinstance(value, str) or not value.strip():
        raise unprocessable(f"Field '{field}' must be a UCP protocol (YAML text or object)", {"field": field})
    return value


def _check(text: str, field: str) -> None:
    from ..compute.ucp import validate_protocol

    verdict = validate_protocol(text)
    if not verdict["valid"]:
        raise unprocessable(f"{field}: {verdict.get('error')}", {"field": field, "error": verdict.get("error")})


def template_of(store: Records, caller: Caller, template_id: str | None) -> dict[str, Any]:
    """A saved protocol the caller owns (404 otherwise)."""
    if not template_id:
        raise unprocessable("Give experiment_template_id (or protocol_experiment)", {"field": "experiment_template_id"})
    template = store.find("experiment_template", template_id, org_id=caller.org_id)
    if template is None:
        raise not_found("Protocol", template_id)
    return template


def _save(store: Records, caller: Caller, project_id: str | None, name: str, text: str, force: bool, extra: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Content-addressed save: the same protocol and name in a project is one template."""
    project = project_of(store, caller, project_id)
    digest = hashlib.sha256(json.dumps([name, text]).encode()).hexdigest()
    for existing in store.list("experiment_template", org_id=caller.org_id, project_id=project["id"]):
        if existing.get("digest") == digest:
            if force:
                raise conflict(f"Protocol '{name}' already exists", existing["id"])
            return existing, False
    fields = {
        "name": name,
        "source_protocol": text,
        "protocol_config": yaml.safe_load(text),
        "digest": digest,
        "project_id": project["id"],
        "organization_id": caller.org_id,
        **extra,
    }
    return store.insert("experiment_template", fields, org_id=caller.org_id, project_id=project["id"]), True


@router.post("/protocols/parse-to-template")
def parse_to_template(body: dict[str, Any], caller: Caller, store: Records) -> dict[str, Any]:
    experiment = body.get("protocol_experiment") or {}
    text = _protocol_text(experiment.get("protocol"), "protocol_experiment.protocol")
    _check(text, "protocol_experiment.protocol")
    template, _ = _save(store, caller, body.get("project_id"), experiment.get("name") or "Protocol", text, False, {})
    return {"template_id": template["id"]}


@router.post("/protocols/validate")
def validate(body: dict[str, Any], caller: Caller) -> dict[str, Any]:
    from ..compute.ucp import validate_protocol

    return validate_protocol(_protocol_text(body.get("protocol"), "protocol"))


@router.post("/protocols/input_references")
def input_references(body: dict[str, Any], caller: Caller) -> list[str]:
    from ..compute.ucp import find_input_references

    return find_input_references(_protocol_text(body.get("protocol"), "protocol"))


@router.post("/protocols/convert")
def convert(body: dict[str, Any], caller: Caller) -> dict[str, Any]:
    from ..compute.vendor import ProtocolConversionError, UnsupportedTarget, convert_protocol

    text = _protocol_text(body.get("protocol"), "protocol")
    _check(text, "protocol")
    try:
        return convert_protocol(
            text,
            require(body, "target"),
            filename_stem=body.get("filename_stem") or "protocol",
            nominal_capacity_ah=body.get("nominal_capacity_ah"),
            verify=bool(body.get("verify")),
        )
    except UnsupportedTarget as exc:
        raise ApiError(501, "NOT_IMPLEMENTED", str(exc), {"target": body.get("target"), "supported": list(exc.supported)}) from exc
    except ProtocolConversionError as exc:
        step = {"step": exc.step, "label": exc.label, "line": exc.line} if exc.step is not None else {}
        raise unprocessable(str(exc), {"target": body.get("target"), **step}) from exc
    except ValueError as exc:
        raise unprocessable(str(exc), {"target": body.get("target")}) from exc


@router.post("/experiment_templates")
def create_template(body: dict[str, Any], caller: Caller, store: Records) -> dict[str, Any]:
    source = body.get("source_protocol") or body.get("protocol_config")
    text = _protocol_text(source, "protocol_config")
    _check(text, "protocol_config")
    extra = {"description": body.get("description"), "parameters_schema": body.get("parameters_schema") or {}}
    template, _ = _save(store, caller, body.get("project_id"), require(body, "name"), text, bool(body.get("force_create")), extra)
    return template


@router.get("/experiment_templates")
def list_templates(
    caller: Caller, store: Records, project_id: str | None = None, limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)
) -> dict[str, Any]:
    project = project_of(store, caller, project_id)
    templates = store.list("experiment_template", org_id=caller.org_id, project_id=project["id"])
    return envelope(templates[offset : offset + limit], len(templates))


@router.get("/experiment_templates/{template_id}")
def get_template(template_id: str, caller: Caller, store: Records) -> dict[str, Any]:
    return template_of(store, caller, template_id)


@router.patch("/experiment_templates/{template_id}")
def update_template(template_id: str, body: dict[str, Any], caller: Caller, store: Records) -> dict[str, Any]:
    template_of(store, caller, template_id)
    return store.update("experiment_template", template_id, {k: body[k] for k in ("name", "description") if k in body})


@router.delete("/experiment_templates/{template_id}")
def delete_template(template_id: str, caller: Caller, store: Records) -> None:
    template_of(store, caller, template_id)
    store.delete("experiment_template", template_id)
