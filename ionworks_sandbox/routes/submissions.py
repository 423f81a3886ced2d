"""What pipelines and simple pipelines share: checking a config, resolving ``db:`` data, job-derived status."""

from __future__ import annotations

from typing import Any

from ..auth import Principal
from ..errors import ApiError, unprocessable
from ..jobs import FAILED, TERMINAL, JobRunner
from ..measurement_processing import TIME_SERIES, object_key
from ..storage import Storage
from ..store import Store

ELEMENT_LABELS = {
    "entry": "Direct Entry",
    "data_fit": "Data Fit",
    "array_data_fit": "Array Data Fit",
    "calculation": "Calculation",
    "validation": "Validation",
}


def check_elements(elements: Any) -> dict[str, dict[str, Any]]:
    """Validate a pipeline's elements up front: 422 naming the element, field and what is supported (or, for an
    unknown fitted parameter, the closest known names; for over-limit inline data, the row counts)."""
    from ..compute.pipeline import PipelineInputError, UnsupportedFeature, check_pipeline
    from ..pipeline_checks import InlineDataTooLarge, UnknownParameter, check_submission

    if not isinstance(elements, dict) or not elements:
        raise unprocessable("Field 'elements' must be a non-empty object of named elements")
    try:
        check_pipeline(elements)
    except UnsupportedFeature as exc:
        raise ApiError(
            422,
            "UNSUPPORTED",
            str(exc),
            {"field": exc.field, "value": exc.value, "supported": list(exc.supported)},
        ) from exc
    except PipelineInputError as exc:
        raise ApiError(422, "CONFIGURATION_ERROR", str(exc), {"field": getattr(exc, "field", None)}) from exc
    try:
        check_submission(elements)
    except (InlineDataTooLarge, UnknownParameter) as exc:
        raise ApiError(422, "CONFIGURATION_ERROR", str(exc), exc.detail()) from exc
    return elements


def resolve_measurements(
    elements: dict[str, Any], store: Store, storage: Storage, caller: Principal
) -> dict[str, str]:
    """Map every ``db:<measurement id>`` in the config to its stored time-series file (404 names the field)."""
    found: dict[str, str] = {}
    for path, value in _strings(elements, "elements"):
        if not value.startswith("db:"):
            continue
        measurement_id = value[3:]
        record = store.find("cell_measurement", measurement_id, org_id=caller.org_id)
        if record is None:
            raise ApiError(404, "NOT_FOUND", f"{path}: cell measurement '{measurement_id}' not found")
        if record.get("processing_status") not in (None, "ready"):
            raise unprocessable(
                f"{path}: cell measurement '{measurement_id}' is {record.get('processing_status')}, not ready"
            )
        found[measurement_id] = str(storage.path(object_key(measurement_id, TIME_SERIES)))
    return found


def _strings(value: Any, path: str):
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def job_state(runner: JobRunner, job_id: str) -> dict[str, Any]:
    """Status fields a pipeline-like record derives from its job."""
    job = runner.get(job_id)
    status = job["status"]
    return {
        "status": status,
        "error": job.get("error"),
        "error_code": job.get("error_code"),
        "is_terminal": status in TERMINAL,
        "is_failed": status in FAILED,
        "job": job,
    }


#: Status fields of finished jobs by id: a finished job's status never changes, and its stored output (tens of
#: kB for a fit) makes decoding it the whole cost of listing hundreds of pipelines.
_finished_states: dict[str, dict[str, Any]] = {}


def job_status(runner: JobRunner, job_id: str) -> dict[str, Any]:
    """:func:`job_state` without the job record; a finished job's is remembered, so listings stay cheap."""
    known = _finished_states.get(job_id)
    if known is None:
        known = job_state(runner, job_id)
        del known["job"]
        if known["is_terminal"]:
            _finished_states[job_id] = known
    return dict(known)


def require_job_output(runner: JobRunner, job_id: str, kind: str, id_: str) -> dict[str, Any]:
    """The finished job's output, or 400 saying the run is not completed."""
    job = runner.get(job_id)
    if job["status"] != "completed":
        detail = f": {job['error']}" if job.get("error") else ""
        raise ApiError(400, "NOT_COMPLETED", f"{kind} '{id_}' is {job['status']}, not completed{detail}")
    return job.get("output") or {}
