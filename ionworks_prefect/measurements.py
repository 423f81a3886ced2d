"""Uploading time-series measurements: validated first, idempotent by name and content, never half-created."""

from __future__ import annotations

import time
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
    MeasurementProcessingFailed,
)
from .measurement_checks import check_measurement
from .measurement_data import MeasurementData, StagedMeasurement, as_polars, frame_digest, stage_measurement
from .resource_ids import check_resource_id, path_segment
from .results import UploadedMeasurement
from .retries import ionworks_task
from .waiting import PollSchedule

#: Tag holding the content digest of an uploaded time series; how re-uploads recognise identical data.
DIGEST_TAG_PREFIX = "iwp-sha256:"  # tags are at most 50 characters
DIGEST_TAG_LENGTH = 32
#: Columns every cycler time series has (the server refuses to process an upload without them).
CYCLER_COLUMNS = ("Time [s]", "Current [A]", "Voltage [V]")
#: The client's documented tag limits: at most 50 tags a measurement (the digest tag is one), 50 characters each.
MAX_TAGS, MAX_TAG_LENGTH = 50, 50
#: Polls for server-side processing: from 20 ms after confirm, each 25 % later than the one before (so a measurement
#: is seen ready within a quarter of the time it took; a million rows take a few tenths of a second), at most 1 s
#: apart.
PROCESSING_POLLS = PollSchedule(first=0.02, factor=1.25, ceiling=1.0)


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


def _digest_tag(digest: str) -> str:
    return DIGEST_TAG_PREFIX + digest[:DIGEST_TAG_LENGTH]


def _find_by_name(client: Ionworks, instance_id: str, name: str) -> Any | None:
    matches = call("list measurements", client.cell_measurement.list, path_segment(instance_id), name_exact=name)
    return next((m for m in matches if m.name == name), None)


def _stored_digest_matches(client: Ionworks, existing: Any, digest: str) -> bool:
    """Compare by the digest tag, or — for measurements uploaded without one — by downloading the data."""
    tags = [t for t in (existing.tags or []) if t.startswith(DIGEST_TAG_PREFIX)]
    if tags:
        return _digest_tag(digest) in tags
    stored = call("download measurement", client.cell_measurement.time_series, path_segment(existing.id),
                  use_cache=False)
    return frame_digest(as_polars(stored)) == digest


def _delete(client: Ionworks, measurement_id: str) -> None:
    call("delete measurement", client.cell_measurement.delete, path_segment(measurement_id))


def _processing_record(client: Ionworks, measurement_id: str) -> dict[str, Any]:
    """The record without its steps and time series: the read ``wait_for_processing`` polls, which the service
    answers while processing is in flight."""
    return call("read measurement processing status", client.get,
                f"/cell_measurements/{path_segment(measurement_id)}?include_steps=false&include_time_series=false")


def _settle(client: Ionworks, measurement_id: str, timeout: float) -> None:
    """Wait for server-side step processing; on failure, timeout or a refused read, delete the measurement and
    raise.

    Polls the record as the client's ``wait_for_processing`` does, with the same reading of its status, on
    :data:`PROCESSING_POLLS` rather than the client's fixed 2 s (``PROCESSING_POLL_SECONDS``), which would
    leave a measurement processed in 0.2 s waiting 2 s. A transient failure of that read is raised as is: the
    measurement is kept, and the task's retry finds it by its digest and waits again.
    """
    deadline = time.monotonic() + timeout
    try:
        for delay in PROCESSING_POLLS.delays():
            record = _processing_record(client, measurement_id)
            status = record.get("processing_status")
            if status is None or status == "ready":
                return
            if status == "failed":
                reason = record.get("processing_error") or "The server could not process this upload."
                break
            if time.monotonic() + delay > deadline:
                reason = f"Still processing after {timeout:g} s (status {status})"
                break
            time.sleep(delay)
    except IonworksTransientError:
        raise
    except IonworksRequestError as exc:
        reason = exc.message
    _delete(client, measurement_id)
    raise MeasurementProcessingFailed(
        f"Ionworks could not process measurement {measurement_id}: {reason}. The upload was removed.",
        measurement_id=measurement_id, reason=reason,
    )


def _create_checked(client: Ionworks, instance_id: str, info: dict[str, Any], digest: Future, series: Path,
                    steps: Optional[pl.DataFrame]) -> Any:
    """``client.cell_measurement.create(..., wait_for_processing=False)`` without its second validation pass.

    ``create`` (ionworks-api 0.38) does: (1) convert the frame, (2) ``validate_measurement_data(time_series,
    strict=False, data_type=..., steps_df=...)``, (3) initiate the upload, (4-5) serialise the frame to parquet
    and PUT it, (6) the same for steps, (7) confirm. :func:`check_measurement` has just run step 2's function on
    the same data with the same arguments (and the sanity checks before it), so repeating it would spend the
    upload's largest cost twice (the per-step sign-convention fits). This runs steps 3-7 with the client's own
    methods, in create's order, so transport, multipart and confirm behave as in ``create``; the time series
    is PUT from the staged parquet file, streamed, instead of being serialised again in memory. The content
    digest (being hashed meanwhile) is first needed in the confirm's tags. A client without those methods gets
    ``create`` itself.

    Each step is its own retried request, and the pending upload is kept across the retries of the later
    ones: a PUT or a confirm that lost its connection is sent again into the same upload, never into a second
    one (confirm is idempotent; a repeated one reads the measurement it made). Only a lost answer to the
    initiate itself can leave a pending upload behind, which Ionworks removes when it expires.
    """
    measurements = client.cell_measurement
    steps_3_to_7 = ("_initiate_upload", "_require_upload", "_upload_upload_target", "_confirm_upload")
    if not all(hasattr(measurements, method) for method in steps_3_to_7):
        detail = {"measurement": _with_digest_tag(info, digest), "time_series": pl.read_parquet(series),
                  **({"steps": steps} if steps is not None else {})}
        return measurements.create(instance_id, detail, wait_for_processing=False)
    from ionworks._dataframe import parquet_upload_body

    started = call("initiate measurement upload", measurements._initiate_upload, path_segment(instance_id),
                   info["name"], info.get("notes"))

    def put_series() -> None:
        with open(series, "rb") as body:  # opened per try: a retried PUT sends the whole file again
            measurements._upload_upload_target(measurements._require_upload(started, "time_series.parquet"), body,
                                               series.stat().st_size)

    call("upload measurement time series", put_series)
    if steps is not None:
        # As create's df_to_dict_validator round trip does: NaN and inf in float columns become null.
        steps = steps.with_columns(pl.when(pl.col(name).is_finite()).then(pl.col(name)).alias(name)
                                   for name, dtype in steps.schema.items() if dtype.is_float())

        def put_steps() -> None:
            with parquet_upload_body(steps) as (body, size):
                measurements._upload_upload_target(measurements._require_upload(started, "steps.parquet"), body,
                                                   size)

        call("upload measurement steps", put_steps)
    return call("confirm measurement upload", measurements._confirm_upload,
                measurement_id=path_segment(started.measurement_id), cell_instance_id=instance_id,
                measurement_data={k: v for k, v in _with_digest_tag(info, digest).items() if k != "data_type"},
                wait_for_processing=False)


def _with_digest_tag(info: dict[str, Any], digest: Future) -> dict[str, Any]:
    return {**info, "tags": [_digest_tag(digest.result()), *info["tags"]]}


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
            _delete(client, existing.id)
            return None
        if _stored_digest_matches(client, existing, digest.result()):
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
    info = {"name": name, "tags": list(tags), **({"notes": notes} if notes else {}),
            **({"data_type": data_type} if data_type else {}), **({"start_time": _iso(start_time)} if start_time else {})}
    try:
        bundle = call("upload measurement", _create_checked, client, instance_id, info, digest, staged.path,
                      steps)
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
