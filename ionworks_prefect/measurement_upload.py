"""Sending a checked time series to Ionworks: the official client's upload steps without its second validation
pass, then the wait for the server's processing (a failed upload is removed, never left half-created)."""

from __future__ import annotations

import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Optional

import polars as pl
from ionworks import Ionworks

from ._calls import call
from .exceptions import IonworksRequestError, IonworksTransientError, MeasurementProcessingFailed
from .resource_ids import path_segment
from .waiting import PollSchedule

#: Tag holding the content digest of an uploaded time series; how re-uploads recognise identical data.
DIGEST_TAG_PREFIX = "iwp-sha256:"  # tags are at most 50 characters
DIGEST_TAG_LENGTH = 32
#: Polls for server-side processing: from 20 ms after confirm, each 25 % later than the one before (so a measurement
#: is seen ready within a quarter of the time it took; a million rows take a few tenths of a second), at most 1 s
#: apart.
PROCESSING_POLLS = PollSchedule(first=0.02, factor=1.25, ceiling=1.0)


def digest_tag(digest: str) -> str:
    """The tag naming a time series by its content digest (:func:`~ionworks_prefect.measurement_data.frame_digest`)."""
    return DIGEST_TAG_PREFIX + digest[:DIGEST_TAG_LENGTH]


def delete_measurement(client: Ionworks, measurement_id: str) -> None:
    call("delete measurement", client.cell_measurement.delete, path_segment(measurement_id))


def _processing_record(client: Ionworks, measurement_id: str) -> dict[str, Any]:
    """The record without its steps and time series: the read ``wait_for_processing`` polls, which the service
    answers while processing is in flight."""
    return call("read measurement processing status", client.get,
                f"/cell_measurements/{path_segment(measurement_id)}?include_steps=false&include_time_series=false")


def settle_processing(client: Ionworks, measurement_id: str, timeout: float) -> None:
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
    delete_measurement(client, measurement_id)
    raise MeasurementProcessingFailed(
        f"Ionworks could not process measurement {measurement_id}: {reason}. The upload was removed.",
        measurement_id=measurement_id, reason=reason,
    )


def send_checked(client: Ionworks, instance_id: str, info: dict[str, Any], digest: Future, series: Path,
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
        detail = {"measurement": withdigest_tag(info, digest), "time_series": pl.read_parquet(series),
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
                measurement_data={k: v for k, v in withdigest_tag(info, digest).items() if k != "data_type"},
                wait_for_processing=False)


def withdigest_tag(info: dict[str, Any], digest: Future) -> dict[str, Any]:
    return {**info, "tags": [digest_tag(digest.result()), *info["tags"]]}
