"""Uploading time-series measurements: validated first, idempotent by name and content, never half-created."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from collections.abc import Iterable
from typing import Any, Optional, Union

import polars as pl
from ionworks import Ionworks
from pydantic import BaseModel, Field

from ._calls import call
from .credentials import CredentialsArg, resolve_credentials
from .events import emit_measurement_uploaded
from .exceptions import (
    InvalidMeasurementError,
    IonworksRequestError,
    IonworksTransientError,
    MeasurementNameTaken,
    MeasurementProcessingFailed,
)
from .measurement_data import MeasurementData, as_polars, check_measurement, frame_digest, load_measurement, step_count
from .results import UploadedMeasurement
from .retries import ionworks_task
from .waiting import PollSchedule

#: Tag holding the content digest of an uploaded time series; how re-uploads recognise identical data.
DIGEST_TAG_PREFIX = "iwp-sha256:"  # tags are at most 50 characters
DIGEST_TAG_LENGTH = 32


class CellTarget(BaseModel):
    """A cell named by specification and instance; both are created on first use (``create_or_get``).

    Example:
        >>> CellTarget(specification={"name": "NMC811 21700", "form_factor": "cylindrical"}, instance="cell-7")
    """

    specification: Union[str, dict[str, Any]] = Field(description="Specification name, or its fields incl. name.")
    instance: str = Field(description="Cell instance name, unique within the specification.")


CellArg = Union[str, CellTarget]


def resolve_cell_instance(client: Ionworks, cell: CellArg) -> str:
    """The cell instance id for ``cell``: an id as is, or a :class:`CellTarget` created on demand.

    Example:
        >>> resolve_cell_instance(client, CellTarget(specification="NMC811 21700", instance="cell-7"))
        '1c4f...'
    """
    if isinstance(cell, str):
        return cell
    spec = cell.specification if isinstance(cell.specification, dict) else {"name": cell.specification}
    found = call("create or get cell specification", client.cell_spec.create_or_get, dict(spec))
    instance = call("create or get cell instance", client.cell_instance.create_or_get, found.id,
                    {"name": cell.instance})
    return instance.id


def _iso(value: datetime | str) -> str:
    return value.isoformat() if isinstance(value, datetime) else value


def _digest_tag(digest: str) -> str:
    return DIGEST_TAG_PREFIX + digest[:DIGEST_TAG_LENGTH]


def _find_by_name(client: Ionworks, instance_id: str, name: str) -> Any | None:
    matches = call("list measurements", client.cell_measurement.list, instance_id, name_exact=name)
    return next((m for m in matches if m.name == name), None)


def _stored_digest_matches(client: Ionworks, existing: Any, digest: str) -> bool:
    """Compare by the digest tag, or — for measurements uploaded without one — by downloading the data."""
    tags = [t for t in (existing.tags or []) if t.startswith(DIGEST_TAG_PREFIX)]
    if tags:
        return _digest_tag(digest) in tags
    stored = call("download measurement", client.cell_measurement.time_series, existing.id, use_cache=False)
    return frame_digest(as_polars(stored)) == digest


def _delete(client: Ionworks, measurement_id: str) -> None:
    call("delete measurement", client.cell_measurement.delete, measurement_id)


def _settle(client: Ionworks, measurement_id: str, timeout: float) -> None:
    """Wait for server-side step processing; on failure or timeout delete the measurement and raise."""
    deadline = time.monotonic() + timeout
    for delay in PollSchedule().delays():
        record = call("get measurement", client.cell_measurement.get, measurement_id)
        status = record.processing_status
        if status in (None, "ready"):
            return
        if status == "failed":
            reason = record.processing_error or "The server could not process this upload."
            break
        if time.monotonic() + delay > deadline:
            reason = f"processing did not finish within {timeout:g} s (status {status})"
            break
        time.sleep(delay)
    _delete(client, measurement_id)
    raise MeasurementProcessingFailed(
        f"Ionworks could not process measurement {record.name!r}: {reason}. The upload was removed.",
        measurement_id=measurement_id, reason=reason,
    )


def store_measurement(
    client: Ionworks,
    data: MeasurementData,
    cell: CellArg,
    name: str | None = None,
    *,
    steps: Optional[pl.DataFrame] = None,
    notes: str | None = None,
    tags: Iterable[str] = (),
    data_type: str | None = None,
    start_time: datetime | str | None = None,
    force: bool = False,
    reader: str | None = None,
    processing_timeout: float = 600.0,
) -> UploadedMeasurement:
    """Upload one time series unless an identical one of that name already exists (see :func:`upload_measurement`).

    Example:
        >>> store_measurement(client, "rpt.csv", "1c4f...", "RPT 0")
    """
    frame, source = load_measurement(data, reader=reader)
    if name is None:
        if source is None:
            raise InvalidMeasurementError("A measurement name is required when uploading a DataFrame")
        name = Path(source).stem
    check_measurement(frame, file=source, data_type=data_type)
    digest = frame_digest(frame)
    instance_id = resolve_cell_instance(client, cell)

    def reference(measurement_id: str, created: bool) -> UploadedMeasurement:
        return UploadedMeasurement(id=measurement_id, name=name, cell_instance_id=instance_id,
                                   row_count=frame.height, step_count=step_count(frame), digest=digest,
                                   created=created, source_file=source)

    def reuse(existing: Any) -> UploadedMeasurement | None:
        """The existing measurement if it holds this data; None if it was a failed leftover (now deleted)."""
        if existing.processing_status == "failed":
            _delete(client, existing.id)
            return None
        if _stored_digest_matches(client, existing, digest):
            _settle(client, existing.id, processing_timeout)
            return reference(existing.id, created=False)
        if force:
            _delete(client, existing.id)
            return None
        raise MeasurementNameTaken(
            f"Cell instance {instance_id} already has a measurement named {name!r} ({existing.id}) with "
            "different data; choose another name or pass force=True to replace it.",
            measurement_id=existing.id,
        )

    existing = _find_by_name(client, instance_id, name)
    if existing is not None and (found := reuse(existing)) is not None:
        return found
    detail: dict[str, Any] = {
        "measurement": {"name": name, "tags": [_digest_tag(digest), *tags],
                        **({"notes": notes} if notes else {}), **({"data_type": data_type} if data_type else {}),
                        **({"start_time": _iso(start_time)} if start_time else {})},
        "time_series": frame,
    }
    if steps is not None:
        detail["steps"] = as_polars(steps, what="steps")
    try:
        bundle = call("upload measurement", client.cell_measurement.create, instance_id, detail,
                      wait_for_processing=False)
    except (IonworksTransientError, IonworksRequestError) as exc:
        # A duplicate name (409) or a failure after the server stored the upload: look before retrying.
        if not isinstance(exc, IonworksTransientError) and exc.status_code != 409:
            raise
        existing = _find_by_name(client, instance_id, name)
        if existing is None or (found := reuse(existing)) is None:
            raise
        return found
    _settle(client, bundle.id, processing_timeout)
    return reference(bundle.id, created=True)


@ionworks_task(
    name="Upload Ionworks measurement",
    description="Validate a time series (frame or cycler file) and store it as an Ionworks measurement, once.",
)
def upload_measurement(
    data: MeasurementData,
    cell: CellArg,
    name: str | None = None,
    credentials: CredentialsArg = None,
    *,
    steps: Optional[pl.DataFrame] = None,
    notes: str | None = None,
    tags: list[str] | None = None,
    data_type: str | None = None,
    start_time: datetime | str | None = None,
    force: bool = False,
    reader: str | None = None,
    processing_timeout: float = 600.0,
) -> UploadedMeasurement:
    """Upload a time series as a measurement of one cell, idempotently.

    ``data`` is a polars/pandas frame or a path to a cycler file (parquet and Ionworks-style CSV via polars,
    vendor exports via ``ionworksdata``). ``cell`` is a cell instance id or a :class:`CellTarget`. The data is
    validated with the official client's rules before anything is sent (:class:`InvalidMeasurementError`
    names file, column and row). Re-uploading the same data under the same name returns the existing
    measurement (``created=False``); the same name with different data raises :class:`MeasurementNameTaken`
    unless ``force=True``, which replaces it. ``start_time`` (when the test ran) and ``rpt:<label>`` /
    ``efc:<cycles>`` tags place the measurement in the cell's test history (see ``gather_cell_tests``). If the server cannot process the upload, the measurement is
    deleted and :class:`MeasurementProcessingFailed` carries the server's reason.

    Limits: identity is the digest stored as a measurement tag; measurements uploaded by other tools are
    compared by downloading their data.

    Example:
        >>> ref = upload_measurement("runs/rpt0.csv", CellTarget(specification="NMC811", instance="cell-7"))
    """
    client = resolve_credentials(credentials).get_client()
    uploaded = store_measurement(
        client, data, cell, name, steps=steps, notes=notes, tags=tags or (), data_type=data_type, start_time=start_time,
        force=force, reader=reader, processing_timeout=processing_timeout,
    )
    emit_measurement_uploaded(client, uploaded)
    return uploaded
