"""Uploading time-series measurements: validated first, idempotent by name and content, never half-created."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Union

import polars as pl
from ionworks import Ionworks
from pydantic import BaseModel, Field

from ._calls import call
from .credentials import CredentialsArg, resolve_credentials
from .cycler_files import ReaderChoice
from .events import emit_measurement_uploaded
from .exceptions import (
    InvalidMeasurementError,
    IonworksRequestError,
    IonworksTransientError,
    MeasurementNameTaken,
)
from .measurement_checks import check_measurement
from .measurement_data import MeasurementData, StagedMeasurement, as_polars, frame_digest, stage_measurement
from .measurement_upload import (
    DIGEST_TAG_PREFIX,
    delete_measurement,
    digest_tag,
    send_checked,
    settle_processing,
)
from .resource_ids import check_resource_id, path_segment
from .results import UploadedMeasurement
from .retries import ionworks_task

#: Columns every cycler time series has (the server refuses to process an upload without them).
CYCLER_COLUMNS = ("Time [s]", "Current [A]", "Voltage [V]")
#: The client's documented tag limits: at most 50 tags a measurement (the digest tag is one), 50 characters each.
MAX_TAGS, MAX_TAG_LENGTH = 50, 50


def check_tags(tags: Iterable[str]) -> list[str]:
    """The extra tags of an upload, or :class:`InvalidMeasurementError` naming the tag that breaks a limit.

    Example:
        >>> check_tags(["rpt:RPT 3", "x" * 51])
        Traceback (most recent call last):
        InvalidMeasurementError: tags: ...
    """
    if isinstance(tags, str):
        raise InvalidMeasurementError(f"tags: must be a list of strings, not the string {tags[:60]!r}")
    listed = list(tags)
    for index, tag in enumerate(listed):
        if not isinstance(tag, str) or not tag.strip():
            raise InvalidMeasurementError(f"tags[{index}]: must be a non-empty string, got {tag!r}"[:200])
        if len(tag.strip()) > MAX_TAG_LENGTH:
            raise InvalidMeasurementError(f"tags[{index}]: {tag[:20]!r}... has {len(tag.strip())} characters, more "
                                          f"than the {MAX_TAG_LENGTH} a tag may have")
    if len({t.strip().lower() for t in listed}) > MAX_TAGS - 1:
        raise InvalidMeasurementError(f"tags: {len(listed)} tags, more than the {MAX_TAGS - 1} an upload may add "
                                      f"(a measurement carries at most {MAX_TAGS}, one is the content digest)")
    return listed


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
        return check_resource_id(cell, "Ionworks cell instance id")
    spec = cell.specification if isinstance(cell.specification, dict) else {"name": cell.specification}
    listed = call("find cell specification", client.cell_spec.list, name_exact=spec["name"], limit=2)
    found = next((s for s in listed if s.name == spec["name"]), None) or call(
        "create or get cell specification", client.cell_spec.create_or_get, dict(spec))
    instance = call("create or get cell instance", client.cell_instance.create_or_get, found.id,
                    {"name": cell.instance})
    return instance.id


def _iso(value: datetime | str) -> str:
    return value.isoformat() if isinstance(value, datetime) else value


def _find_by_name(client: Ionworks, instance_id: str, name: str) -> Any | None:
    matches = call("list measurements", client.cell_measurement.list, path_segment(instance_id), name_exact=name)
    return next((m for m in matches if m.name == name), None)


def _stored_digest_matches(client: Ionworks, existing: Any, digest: str) -> bool:
    """Compare by the digest tag, or — for measurements uploaded without one — by downloading the data."""
    tags = [t for t in (existing.tags or []) if t.startswith(DIGEST_TAG_PREFIX)]
    if tags:
        return digest_tag(digest) in tags
    stored = call("download measurement", client.cell_measurement.time_series, path_segment(existing.id),
                  use_cache=False)
    return frame_digest(as_polars(stored)) == digest


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
    reader: ReaderChoice = None,
    reader_options: Optional[dict[str, Any]] = None,
    cycles: Optional[tuple[int, int]] = None,
    rated_capacity: Optional[float] = None,
    voltage_window: Optional[tuple[float, float]] = None,
    processing_timeout: float = 600.0,
) -> UploadedMeasurement:
    """Upload one time series unless an identical one of that name already exists (see :func:`upload_measurement`).

    Example:
        >>> store_measurement(client, "rpt.csv", "1c4f...", "RPT 0")
    """
    tags = check_tags(tags)
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise InvalidMeasurementError(f"name: a measurement name must be a non-empty string, got {name!r}"[:200])
    with stage_measurement(data, reader=reader, options=reader_options, cycles=cycles) as staged:
        if name is None and staged.source is None:
            raise InvalidMeasurementError("A measurement name is required when uploading a DataFrame")
        if data_type is None:
            columns = staged.table.collect_schema().names()
            missing = [c for c in CYCLER_COLUMNS if c not in columns]
            if missing:
                raise InvalidMeasurementError(f"Cycler data needs a {missing[0]!r} column; the data has {columns}",
                                              file=staged.source, column=missing[0])
        check_measurement(staged.table, file=staged.source, data_type=data_type, rated_capacity=rated_capacity,
                          voltage_window=voltage_window)
        steps_frame = as_polars(steps, what="steps") if steps is not None else None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="measurement-digest") as pool:
            # polars and hashlib release the GIL: hashed while the cell and the name are looked up and the file
            # is sent (after the checks, so the two never hold their columns at once).
            digest = pool.submit(staged.digest)
            return _store_checked(client, staged, digest, cell, name or Path(staged.source).stem, steps_frame,
                                  notes=notes, tags=tags, data_type=data_type, start_time=start_time, force=force,
                                  processing_timeout=processing_timeout)


def _store_checked(client: Ionworks, staged: StagedMeasurement, digest: Future, cell: CellArg, name: str,
                   steps: Optional[pl.DataFrame], *, notes: str | None, tags: Iterable[str], data_type: str | None,
                   start_time: datetime | str | None, force: bool, processing_timeout: float) -> UploadedMeasurement:
    instance_id = resolve_cell_instance(client, cell)

    def reference(measurement_id: str, created: bool) -> UploadedMeasurement:
        return UploadedMeasurement(id=measurement_id, name=name, cell_instance_id=instance_id,
                                   row_count=staged.height, step_count=staged.step_count(), digest=digest.result(),
                                   created=created, source_file=staged.source)

    def reuse(existing: Any) -> UploadedMeasurement | None:
        """The existing measurement if it holds this data; None if it was a failed leftover (now deleted)."""
        if existing.processing_status == "failed":
            delete_measurement(client, existing.id)
            return None
        if _stored_digest_matches(client, existing, digest.result()):
            settle_processing(client, existing.id, processing_timeout)
            return reference(existing.id, created=False)
        if force:
            delete_measurement(client, existing.id)
            return None
        raise MeasurementNameTaken(
            f"Cell instance {instance_id} already has a measurement named {name!r} ({existing.id}) with "
            "different data; choose another name or pass force=True to replace it.",
            measurement_id=existing.id,
        )

    existing = _find_by_name(client, instance_id, name)
    if existing is not None and (found := reuse(existing)) is not None:
        return found
    info = {"name": name, "tags": list(tags), **({"notes": notes} if notes else {}),
            **({"data_type": data_type} if data_type else {}), **({"start_time": _iso(start_time)} if start_time else {})}
    try:
        bundle = call("upload measurement", send_checked, client, instance_id, info, digest, staged.path,
                      steps)
    except (IonworksTransientError, IonworksRequestError) as exc:
        # A duplicate name (409) or a failure after the server stored the upload: look before retrying.
        if not isinstance(exc, IonworksTransientError) and exc.status_code != 409:
            raise
        existing = _find_by_name(client, instance_id, name)
        if existing is None or (found := reuse(existing)) is None:
            raise
        return found
    settle_processing(client, bundle.id, processing_timeout)
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
    reader: ReaderChoice = None,
    reader_options: Optional[dict[str, Any]] = None,
    cycles: Optional[tuple[int, int]] = None,
    rated_capacity: Optional[float] = None,
    voltage_window: Optional[tuple[float, float]] = None,
    processing_timeout: float = 600.0,
) -> UploadedMeasurement:
    """Upload a time series as a measurement of one cell, idempotently.

    ``data`` is a polars/pandas frame or a path to a cycler file (see :mod:`ionworks_prefect.cycler_files`
    for the formats). The frame is checked once before anything is sent: sanity checks (finite values,
    voltage and current ranges, time in seconds and never backwards, no duplicated columns or decimal
    commas) and the official client's rules. Re-uploading the same data under the same name returns the
    existing measurement (``created=False``); the same name with different data raises
    :class:`MeasurementNameTaken` unless ``force=True``, which replaces it. If the server cannot process the
    upload, the measurement is deleted and :class:`MeasurementProcessingFailed` carries the server's reason.
    ``start_time`` (when the test ran) and ``rpt:<label>`` / ``efc:<cycles>`` tags place the measurement in the
    cell's test history (see ``gather_cell_tests``).

    Limits: identity is the digest stored as a measurement tag; measurements uploaded by other tools are
    compared by downloading their data.

    Args:
        data: a frame or a cycler file path.
        cell: a cell instance id or a :class:`CellTarget` (created on first use).
        name: the measurement name; a file's stem by default (required for frames).
        credentials: an ``IonworksCredentials`` block, its name, or None for the ``IONWORKS_*`` variables.
        steps: a step table to store instead of the one the server derives.
        notes: measurement notes.
        tags: extra measurement tags (``rpt:<label>`` groups measurements into one test, ``efc:<n>`` its throughput).
        data_type: ``"ocp"`` or ``"eis"`` for those kinds of data; None for cycler data.
        start_time: when the test ran (orders the cell's tests).
        force: replace a measurement of that name holding different data.
        reader: a reader name, or a mapping of glob pattern -> reader name; None detects the format.
        reader_options: options for the ionworksdata reader (e.g. a Neware workbook's ``sheets``).
        cycles: ``(first, last)`` values of ``Cycle count`` to keep (inclusive), for a file holding more tests
            than this measurement.
        rated_capacity: the cell's capacity in A.h: bounds the plausible current (50 C).
        voltage_window: the cell's ``(V_min, V_max)``: bounds the plausible voltage (else 0-6 V).
        processing_timeout: seconds to wait for the server to process the upload.

    Returns:
        The stored measurement (``.id``, ``.row_count``, ``.step_count``, ``.created``, ``.db_ref``).

    Raises:
        InvalidMeasurementError: the data failed a check (a :class:`MeasurementSanityError` names the check)
            or could not be read (:class:`UnsupportedCyclerFile` names the format and the remedy); nothing
            was created.
        MeasurementNameTaken: the name holds different data and ``force`` is False.
        MeasurementProcessingFailed: the server could not process the upload; it was removed.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect import CellTarget, upload_measurement

        @flow
        def store_rpt(csv_path: str = "runs/rpt0.csv") -> str:
            uploaded = upload_measurement(csv_path, CellTarget(specification="NMC811", instance="cell-7"),
                                          tags=["rpt:RPT 0"], rated_capacity=5.0)
            return uploaded.db_ref

        @flow
        def store_arbin_channel():
            upload_measurement("drop/FastCharge_CH8.csv", "1c4f...", reader="arbin", voltage_window=(2.0, 3.6))
        ```
    """
    client = resolve_credentials(credentials).get_client()
    uploaded = store_measurement(
        client, data, cell, name, steps=steps, notes=notes, tags=tags or (), data_type=data_type,
        start_time=start_time, force=force, reader=reader, reader_options=reader_options, cycles=cycles,
        rated_capacity=rated_capacity, voltage_window=voltage_window, processing_timeout=processing_timeout,
    )
    emit_measurement_uploaded(client, uploaded)
    return uploaded
