"""Cell measurements: signed-URL upload, processing status, listing, downloads, steps and cycles.

Upload: ``initiate-upload`` answers absolute signed URLs for ``time_series.parquet`` and ``steps.parquet`` and
keeps a pending upload (not listed anywhere, removed with its files if not confirmed in time, see
:mod:`ionworks_sandbox.uploads`); the client PUTs the files; ``confirm-upload`` creates the measurement once and
processes it (see :mod:`ionworks_sandbox.measurement_processing`). Small uploads are processed
before confirm answers, so it reports ``ready`` and the client does not poll. A rejected upload is reported as
``pending`` by confirm, as the platform does at that point, so the client's wait reads the ``failed`` record
at once and raises ``MeasurementProcessingError`` (the client would return a ``failed`` confirm silently).
A confirm refused for its metadata (tags over the documented limits, a taken name ...) discards the upload and its
files; one that comes before the time series was stored leaves the upload waiting.

Every measurement record carries ``tags`` (a list), ``measurement_type``, ``processing_status``,
``processing_error``, and once ready ``row_count``, ``step_count`` and ``data_digest`` (SHA-256 over the parsed
frame's values, see :func:`~ionworks_sandbox.measurement_processing.data_digest`).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Annotated, Any

import polars as pl
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import RedirectResponse

from ..auth import Principal
from ..errors import ApiError, bad_request, conflict, not_found
from ..measurement_processing import (
    CYCLES,
    INLINE_ROW_LIMIT,
    STEPS,
    TIME_SERIES,
    MeasurementProcessor,
    columns_of,
    object_key,
    parquet_row_count,
)
from ..query import filter_records, order_and_page
from ..storage import Storage
from ..store import Store
from ..uploads import LOCK, UPLOAD, PendingUploads
from .deps import Caller, Objects, Paging, Records, Uploads, envelope, owned, project_of
from .measurement_metadata import check_protocol, checked_metadata, normalise_tags, time_series_only

KIND = "cell_measurement"
_FILTERS = ("name", "measurement_type", "created_by_email", "created_at", "updated_at", "start_time")
_UPDATABLE = (
    "name",
    "notes",
    "start_time",
    "end_time",
    "channel_id",
    "protocol_id",
    "tags",
    "properties",
    "protocol",
    "test_setup",
)
_SERVER_FIELDS = (
    "id", "created_at", "updated_at", "cell_instance_id", "cell_specification_id", "project_id", "organization_id",
    "measurement_type", "processing_status", "processing_error", "row_count", "step_count", "data_digest", "steps_source",
)  # fmt: skip


@asynccontextmanager
async def _processing(app: FastAPI):
    processor = MeasurementProcessor(app.state.store, app.state.storage)
    uploads = PendingUploads(app.state.store, app.state.storage, app.state.settings.upload_ttl_s)
    app.state.measurements, app.state.uploads = processor, uploads
    processor.start()
    uploads.start()
    try:
        yield
    finally:
        uploads.close()
        processor.close()


router = APIRouter(lifespan=_processing)


def get_processor(request: Request) -> MeasurementProcessor:
    return request.app.state.measurements


Processor = Annotated[MeasurementProcessor, Depends(get_processor)]


def _measurement(store: Store, caller: Principal, measurement_id: str) -> dict[str, Any]:
    return owned(store, caller, KIND, measurement_id, "Cell measurement")


def _name_taken(store: Store, instance_id: str, name: str, own_id: str | None = None) -> None:
    for other in store.list(KIND, parent_id=instance_id, name=name):
        if other["id"] != own_id:
            raise conflict(f"Cell measurement '{name}' already exists for this cell instance", other["id"])


def _tag_filter(records: list[dict[str, Any]], request: Request) -> list[dict[str, Any]]:
    every = {t.lower() for t in request.query_params.getlist("tags_all")}
    some = {t.lower() for t in request.query_params.getlist("tags_any")}
    kept = []
    for record in records:
        tags = {t.lower() for t in record.get("tags") or []}
        if every <= tags and (not some or some & tags):
            kept.append(record)
    return kept


# ---- upload -------------------------------------------------------------------------------------------


@router.post("/cell_instances/{instance_id}/cell_measurements/initiate-upload")
def initiate_upload(
    instance_id: str, body: dict[str, Any], caller: Caller, store: Records, uploads: Uploads
) -> dict[str, Any]:
    instance = owned(store, caller, "cell_instance", instance_id, "Cell instance")
    measurement = checked_metadata(body)
    time_series_only(body)
    check_protocol(store, caller, measurement.get("protocol_id"), instance["project_id"])
    _name_taken(store, instance_id, measurement["name"])
    upload = uploads.open(
        {"name": measurement["name"], "cell_instance_id": instance_id},
        org_id=caller.org_id,
        project_id=instance["project_id"],
        parent_id=instance_id,
    )
    return {"measurement_id": upload["id"], "uploads": uploads.targets(upload)}


@router.post("/cell_measurements/{measurement_id}/confirm-upload")
def confirm_upload(
    measurement_id: str,
    body: dict[str, Any],
    caller: Caller,
    store: Records,
    storage: Objects,
    uploads: Uploads,
    processor: Processor,
) -> dict[str, Any]:
    with LOCK:  # one confirm turns the upload into the measurement; a repeated one reads the result
        confirmed = store.find(KIND, measurement_id, org_id=caller.org_id)
        if confirmed is not None:
            return _bundle(confirmed)
        upload = uploads.find(measurement_id, org_id=caller.org_id)
        if upload is None:
            raise not_found("Measurement upload", measurement_id)
        try:
            fields = _measurement_fields(store, caller, upload, body)
        except ApiError:
            uploads.discard(measurement_id)
            raise
        series_path = storage.path(object_key(measurement_id, TIME_SERIES))
        if not series_path.is_file():
            raise bad_request(
                f"{TIME_SERIES} has not been uploaded for measurement '{measurement_id}'", {"field": TIME_SERIES}
            )
        fields["steps_source"] = "uploaded" if storage.path(object_key(measurement_id, STEPS)).is_file() else "derived"
        store.delete(UPLOAD, measurement_id)
        store.insert(
            KIND, fields, org_id=caller.org_id, project_id=fields["project_id"], parent_id=upload["cell_instance_id"],
            id=measurement_id,
        )  # fmt: skip
    rows = parquet_row_count(series_path)
    if rows is not None and rows > INLINE_ROW_LIMIT:
        processor.submit(measurement_id)
    else:
        processor.run(measurement_id)
    return _bundle(store.get(KIND, measurement_id))


def _measurement_fields(
    store: Store, caller: Principal, upload: dict[str, Any], body: dict[str, Any]
) -> dict[str, Any]:
    """The record a confirm creates, from the upload and the confirm's metadata; 4xx naming what is wrong."""
    instance_id = upload["cell_instance_id"]
    if body.get("cell_instance_id") not in (None, instance_id):
        raise bad_request(
            f"cell_instance_id '{body['cell_instance_id']}' does not match the upload's cell instance '{instance_id}'",
            {"field": "cell_instance_id"},
        )
    time_series_only(body)
    metadata = checked_metadata(body)
    instance = owned(store, caller, "cell_instance", instance_id, "Cell instance")
    check_protocol(store, caller, metadata.get("protocol_id"), instance["project_id"])
    _name_taken(store, instance_id, metadata["name"])
    return {
        **{k: v for k, v in metadata.items() if k not in _SERVER_FIELDS},
        "cell_instance_id": instance_id,
        "cell_specification_id": instance["cell_specification_id"],
        "project_id": instance["project_id"],
        "organization_id": caller.org_id,
        "created_by_email": f"sandbox@{caller.org.name}.local",
        "measurement_type": "time_series",
        "processing_status": "pending",
        "processing_error": None,
        "row_count": None,
        "step_count": None,
        "data_digest": None,
    }


def _bundle(record: dict[str, Any]) -> dict[str, Any]:
    """The confirm answer; a rejected upload reads ``pending`` so the client's wait reports the failure."""
    status = "pending" if record["processing_status"] == "failed" else record["processing_status"]
    return {
        **record,
        "processing_status": status,
        "processing_error": None,
        "steps_created": record.get("step_count") or 0,
    }


def delete_instance_measurements(store: Store, storage: Storage, instance_id: str) -> None:
    """Delete an instance's measurements and pending uploads with their stored files."""
    with LOCK:
        for kind in (KIND, UPLOAD):
            for record in store.list(kind, parent_id=instance_id):
                store.delete(kind, record["id"])
                storage.delete_prefix(record["id"])


# ---- reading ------------------------------------------------------------------------------------------


@router.get("/cell_measurements")
def list_by_project(
    request: Request,
    caller: Caller,
    store: Records,
    project_id: str,
    q: str | None = None,
    limit: int = Query(25, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    order_by: str | None = None,
    order: str | None = None,
) -> dict[str, Any]:
    project_of(store, caller, project_id)
    records = store.list(KIND, org_id=caller.org_id, project_id=project_id)
    records = _tag_filter(filter_records(records, dict(request.query_params), ("measurement_type",)), request)
    if q:
        needle = q.lower()
        records = [r for r in records if needle in _searchable(r)]
    return envelope(order_and_page(records, order_by, order, offset, limit), len(records))


def _searchable(record: dict[str, Any]) -> str:
    protocol = record.get("protocol")
    protocol_name = protocol.get("name") if isinstance(protocol, dict) else None
    parts = [record.get("name"), record.get("notes"), protocol_name, *(record.get("tags") or [])]
    return " ".join(str(p) for p in parts if p).lower()


@router.get("/cell_instances/{instance_id}/cell_measurements")
def list_by_instance(
    instance_id: str,
    request: Request,
    caller: Caller,
    store: Records,
    page: Paging,
) -> dict[str, Any]:
    owned(store, caller, "cell_instance", instance_id, "Cell instance")
    records = filter_records(store.list(KIND, parent_id=instance_id), dict(request.query_params), _FILTERS)
    records = _tag_filter(records, request)
    return page.envelope(records)


@router.get("/cell_measurements/{measurement_id}")
def get_measurement(
    measurement_id: str, caller: Caller, store: Records, include_steps: bool = True, include_time_series: bool = True
) -> dict[str, Any]:
    """The record; while processing is in flight only without steps and time series, as the platform answers
    (the client's ``wait_for_processing`` reads ``?include_steps=false&include_time_series=false`` for that)."""
    record = _measurement(store, caller, measurement_id)
    if record.get("processing_status") in ("pending", "running") and (include_steps or include_time_series):
        raise ApiError(
            409,
            "NOT_READY",
            f"Cell measurement '{measurement_id}' is still processing ({record['processing_status']}); read it with "
            "include_steps=false&include_time_series=false until it is ready",
        )
    return record


def _ready(record: dict[str, Any]) -> None:
    """409 unless processing finished: steps and cycles exist only for ``ready`` measurements."""
    status = record.get("processing_status")
    if status in ("pending", "running"):
        raise ApiError(
            409, "NOT_READY", f"Cell measurement '{record['id']}' is still processing ({status}); try again shortly"
        )
    if status == "failed":
        raise ApiError(
            409,
            "PROCESSING_FAILED",
            f"Cell measurement '{record['id']}' has no steps: {record.get('processing_error')}",
        )


def _redirect(storage: Storage, measurement_id: str, filename: str) -> RedirectResponse:
    key = object_key(measurement_id, filename)
    if not storage.path(key).is_file():
        raise ApiError(404, "NOT_FOUND", f"Cell measurement '{measurement_id}' has no {filename}")
    return RedirectResponse(storage.signed_url(key), status_code=307)


@router.get("/cell_measurements/{measurement_id}/time_series/download")
def download_time_series(measurement_id: str, caller: Caller, store: Records, storage: Objects) -> RedirectResponse:
    _measurement(store, caller, measurement_id)
    return _redirect(storage, measurement_id, TIME_SERIES)


@router.get("/cell_measurements/{measurement_id}/steps/download")
def download_steps(measurement_id: str, caller: Caller, store: Records, storage: Objects) -> RedirectResponse:
    _ready(_measurement(store, caller, measurement_id))
    return _redirect(storage, measurement_id, STEPS)


def _table(storage: Storage, measurement_id: str, filename: str) -> dict[str, list[Any]]:
    return columns_of(pl.read_parquet(storage.path(object_key(measurement_id, filename))))


@router.get("/cell_measurements/{measurement_id}/steps_and_cycles")
def steps_and_cycles(measurement_id: str, caller: Caller, store: Records, storage: Objects) -> dict[str, Any]:
    _ready(_measurement(store, caller, measurement_id))
    return {"steps": _table(storage, measurement_id, STEPS), "cycles": _table(storage, measurement_id, CYCLES)}


@router.get("/cell_measurements/{measurement_id}/cycles")
def cycles(measurement_id: str, caller: Caller, store: Records, storage: Objects) -> dict[str, Any]:
    _ready(_measurement(store, caller, measurement_id))
    return {"cycles": _table(storage, measurement_id, CYCLES)}


# ---- changing -----------------------------------------------------------------------------------------


@router.patch("/cell_measurements/{measurement_id}")
def update_measurement(measurement_id: str, body: dict[str, Any], caller: Caller, store: Records) -> dict[str, Any]:
    record = _measurement(store, caller, measurement_id)
    for field in body:
        if field not in _UPDATABLE:
            raise bad_request(f"Field '{field}' cannot be updated; updatable: {list(_UPDATABLE)}", {"field": field})
    changes = dict(body)
    if "tags" in body:
        changes["tags"] = normalise_tags(body["tags"])
    if "name" in body and body["name"] in (None, ""):
        raise bad_request("Field 'name' must not be empty", {"field": "name"})
    if "protocol_id" in body:
        check_protocol(store, caller, body["protocol_id"], record["project_id"])
    with LOCK:
        if "name" in body:
            _name_taken(store, record["cell_instance_id"], body["name"], measurement_id)
        return store.update(KIND, measurement_id, changes)


@router.delete("/cell_measurements/{measurement_id}", status_code=204)
def delete_measurement(measurement_id: str, caller: Caller, store: Records, storage: Objects) -> None:
    _measurement(store, caller, measurement_id)
    store.delete(KIND, measurement_id)
    storage.delete_prefix(measurement_id)
