"""upload_measurement against the live sandbox: validation first, idempotent, nothing half-created."""

from __future__ import annotations

import polars as pl
import pytest
from ionworksdata.write import bdf
from prefect import flow

from ionworks_prefect import (
    CellTarget,
    InvalidMeasurementError,
    MeasurementNameTaken,
    MeasurementProcessingFailed,
    UploadedMeasurement,
    upload_measurement,
)
from ionworks_prefect.measurement_data import frame_digest

from .measurement_frames import CURRENT, STEP, TIME, VOLTAGE, discharge_frame, new_instance, unique

pytestmark = pytest.mark.usefixtures("prefect_server", "sandbox")


@flow
def upload_flow(data, cell, name=None, **options) -> UploadedMeasurement:
    return upload_measurement(data, cell, name, **options)


def _names(client, instance_id: str) -> list[str]:
    return [m.name for m in client.cell_measurement.list(instance_id)]


def test_upload_creates_the_cell_on_demand_and_reports_counts(client):
    target = CellTarget(specification={"name": unique("spec"), "form_factor": "cylindrical"}, instance="cell-1")
    frame = discharge_frame()
    uploaded = upload_flow(frame, target, "rpt-0")
    stored = client.cell_measurement.get(uploaded.id)
    assert (uploaded.name, uploaded.row_count, uploaded.step_count, uploaded.created) == ("rpt-0", 300, 3, True)
    assert uploaded.db_ref == f"db:{uploaded.id}" and uploaded.digest == frame_digest(frame)
    assert stored.cell_instance_id == uploaded.cell_instance_id and stored.processing_status == "ready"
    assert (stored.row_count, stored.step_count) == (300, 3)
    assert client.cell_measurement.time_series(uploaded.id, use_cache=False).equals(frame)


def test_same_data_and_name_returns_the_existing_measurement(client):
    _, instance_id = new_instance(client)
    frame = discharge_frame()
    first = upload_flow(frame, instance_id, "rpt-0")
    again = upload_flow(frame.to_pandas(), instance_id, "rpt-0")  # pandas frame, same content
    assert (again.id, again.created) == (first.id, False)
    assert _names(client, instance_id) == ["rpt-0"]


def test_name_taken_by_different_data_is_refused_unless_forced(client):
    _, instance_id = new_instance(client)
    first = upload_flow(discharge_frame(), instance_id, "rpt-0")
    other = discharge_frame(current=2.0)
    with pytest.raises(MeasurementNameTaken) as caught:
        upload_flow(other, instance_id, "rpt-0")
    assert caught.value.measurement_id == first.id and "force=True" in str(caught.value)
    replaced = upload_flow(other, instance_id, "rpt-0", force=True)
    assert replaced.id != first.id and replaced.created
    assert [m.id for m in client.cell_measurement.list(instance_id)] == [replaced.id]


def test_bad_data_is_refused_before_anything_is_created(client, tmp_path):
    spec_name = unique("spec")
    frame = discharge_frame()
    reversed_sign = frame.with_columns(-pl.col(CURRENT))
    with pytest.raises(InvalidMeasurementError) as caught:
        upload_flow(reversed_sign, CellTarget(specification=spec_name, instance="c1"), "bad")
    assert caught.value.column == CURRENT and "sign" in str(caught.value).lower()

    path = tmp_path / "late_start.csv"
    frame.with_columns(pl.col(TIME) + 5.0).write_csv(path)
    with pytest.raises(InvalidMeasurementError) as caught:
        upload_flow(str(path), CellTarget(specification=spec_name, instance="c1"))
    assert caught.value.file == str(path) and caught.value.column == TIME
    assert str(path) in str(caught.value) and "'Time [s]'" in str(caught.value)

    skipped = frame.with_columns(pl.when(pl.col(STEP) == 2).then(3).otherwise(pl.col(STEP)).alias(STEP))
    with pytest.raises(InvalidMeasurementError) as caught:
        upload_flow(skipped, CellTarget(specification=spec_name, instance="c1"), "skip")
    assert caught.value.column == STEP and caught.value.row == 200
    assert list(client.cell_spec.list(name_exact=spec_name)) == []  # not even the cell was created


def test_cycler_files_are_read_by_format(client, tmp_path):
    _, instance_id = new_instance(client)
    frame = discharge_frame()
    csv, parquet, vendor = tmp_path / "rpt.csv", tmp_path / "rpt.parquet", tmp_path / "rpt_cycler.bdf"
    frame.write_csv(csv)
    frame.write_parquet(parquet)
    bdf(frame, vendor)
    from_csv = upload_flow(str(csv), instance_id)
    from_parquet = upload_flow(parquet, instance_id, "rpt")  # same name and data as the CSV: reused
    from_vendor = upload_flow(vendor, instance_id)
    assert (from_csv.name, from_csv.source_file) == ("rpt", str(csv))
    assert from_parquet.id == from_csv.id and not from_parquet.created
    assert from_vendor.name == "rpt_cycler" and from_vendor.row_count == 300 and from_vendor.step_count == 3
    stored = client.cell_measurement.time_series(from_vendor.id, use_cache=False)
    assert {"Discharge capacity [A.h]", VOLTAGE} <= set(stored.columns)
    assert sorted(_names(client, instance_id)) == ["rpt", "rpt_cycler"]


def test_a_frame_the_server_could_not_process_is_refused_before_sending(client):
    _, instance_id = new_instance(client)
    with pytest.raises(InvalidMeasurementError, match="needs a 'Voltage \\[V\\]' column"):
        upload_flow(discharge_frame().drop(VOLTAGE), instance_id, "no-voltage")
    assert _names(client, instance_id) == []


def test_server_processing_failure_removes_the_upload(client):
    """The server refuses what the plugin would have caught (sent here by the official client on its own, which
    accepts a frame without voltage): waiting on its processing deletes it and names the server's reason."""
    from ionworks_prefect.measurement_upload import settle_processing

    _, instance_id = new_instance(client)
    created = client.cell_measurement.create(instance_id, {"measurement": {"name": "no-voltage"},
                                                           "time_series": discharge_frame().drop(VOLTAGE)},
                                             wait_for_processing=False)  # fmt: skip
    with pytest.raises(MeasurementProcessingFailed) as caught:
        settle_processing(client, created.id, timeout=30)
    assert "Voltage [V]" in caught.value.reason and caught.value.reason in str(caught.value)
    assert _names(client, instance_id) == []
