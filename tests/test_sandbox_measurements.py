"""Measurement upload, processing, reading and changes through the official client against the live sandbox."""

from __future__ import annotations

import httpx
import polars as pl
import pytest
from ionworks.errors import IonworksError, MeasurementProcessingError

from ionworks_sandbox.measurement_processing import INLINE_ROW_LIMIT, data_digest

from .measurement_frames import (
    STEP,
    TIME,
    VOLTAGE,
    discharge_frame,
    new_instance,
    parquet_bytes,
    raw_upload,
    unique,
)


def _status(call) -> int:
    with pytest.raises(IonworksError) as caught:
        call()
    return caught.value.status_code


def _upload(client, instance_id: str, frame: pl.DataFrame, name: str | None = None, **measurement):
    return client.cell_measurement.create(
        instance_id, {"measurement": {"name": name or unique("rpt"), **measurement}, "time_series": frame}
    )


def test_upload_reads_back_equal_with_steps_cycles_and_counts(client):
    _, instance_id = new_instance(client)
    frame = discharge_frame()
    bundle = _upload(client, instance_id, frame, notes="RPT at 25 degC", tags=["RPT", " rpt", "25degC"])
    assert (bundle.processing_status, bundle.steps_created, bundle.tags) == ("ready", 3, ["25degC", "RPT"])

    measurement = client.cell_measurement.get(bundle.id)
    assert (measurement.measurement_type.value, measurement.processing_error) == ("time_series", None)
    assert (measurement.row_count, measurement.step_count, measurement.notes) == (300, 3, "RPT at 25 degC")
    assert measurement.data_digest == data_digest(frame)

    detail = client.cell_measurement.detail(bundle.id)
    assert detail.time_series.equals(frame)
    assert detail.steps["Step type"].to_list() == ["Rest", "Constant current discharge", "Rest"]
    assert detail.steps["Start index"].to_list() == [0, 100, 200]
    assert detail.cycles["Discharge capacity [A.h]"][0] == pytest.approx(99 / 3600, rel=0.02)
    assert client.cell_measurement.time_series(bundle.id, row_range=(95, 105)).equals(frame.slice(95, 10))
    both = client.cell_measurement.steps_and_cycles(bundle.id)
    assert both.steps.height == 3 and client.cell_measurement.cycles(bundle.id).equals(both.cycles)
    assert (
        client.resolve_measurement(
            client.cell_spec.get(measurement.cell_specification_id).name,
            client.cell_instance.get(instance_id).name,
            measurement.name,
        ).id
        == bundle.id
    )


def test_create_or_get_twice_keeps_one_measurement(client):
    _, instance_id = new_instance(client)
    detail = {"measurement": {"name": "rpt-0"}, "time_series": discharge_frame()}
    first = client.cell_measurement.create_or_get(instance_id, detail)
    again = client.cell_measurement.create_or_get(instance_id, detail)
    assert again.id == first.id
    assert [m.id for m in client.cell_measurement.list(instance_id)] == [first.id]
    with pytest.raises(IonworksError) as caught:
        client.post(
            f"/cell_instances/{instance_id}/cell_measurements/initiate-upload", {"measurement": {"name": "rpt-0"}}
        )
    assert (caught.value.error_code, caught.value.data["detail"]["existing_id"]) == ("CONFLICT", first.id)


def test_uploaded_steps_are_kept(client):
    _, instance_id = new_instance(client)
    steps = {
        "Step count": [0, 1, 2],
        "Step type": ["Rest", "Constant current discharge", "Rest"],
        "Cycle count": [0, 0, 0],
    }
    bundle = client.cell_measurement.create(
        instance_id, {"measurement": {"name": unique("rpt")}, "time_series": discharge_frame(), "steps": steps}
    )
    assert client.cell_measurement.get(bundle.id).steps_source == "uploaded"
    assert client.cell_measurement.steps(bundle.id).to_dict(as_series=False) == steps
    assert client.cell_measurement.cycles(bundle.id).height == 0  # no capacities: no cycle metrics


def test_digest_follows_values_not_the_writer(client):
    frame = discharge_frame()
    assert data_digest(frame) == data_digest(
        frame.with_columns(pl.col(STEP).cast(pl.Float32)).select(reversed(frame.columns))
    )
    assert data_digest(frame) != data_digest(frame.with_columns(pl.col(VOLTAGE) + 1e-9))
    _, instance_id = new_instance(client)
    pandas_copy = _upload(client, instance_id, frame.to_pandas())
    assert client.cell_measurement.get(pandas_copy.id).data_digest == data_digest(frame)


def test_pending_upload_is_invisible_until_confirmed(client, sandbox):
    _, instance_id = new_instance(client)
    started = client.post(
        f"/cell_instances/{instance_id}/cell_measurements/initiate-upload", {"measurement": {"name": "late"}}
    )
    mid = started["measurement_id"]
    assert [u["filename"] for u in started["uploads"]] == ["time_series.parquet", "steps.parquet"]
    assert all(u["signed_url"].startswith(sandbox.url) and "multipart" not in u for u in started["uploads"])
    assert list(client.cell_measurement.list(instance_id)) == []
    assert _status(lambda: client.cell_measurement.get(mid)) == 404
    confirm = {"cell_instance_id": instance_id, "measurement": {"name": "late"}, "measurement_type": "time_series"}
    assert _status(lambda: client.post(f"/cell_measurements/{mid}/confirm-upload", confirm)) == 400  # nothing PUT yet

    httpx.put(started["uploads"][0]["signed_url"], content=parquet_bytes(discharge_frame())).raise_for_status()
    assert client.post(f"/cell_measurements/{mid}/confirm-upload", confirm)["processing_status"] == "ready"
    assert (
        client.post(f"/cell_measurements/{mid}/confirm-upload", confirm)["id"] == mid
    )  # a repeated confirm is harmless
    assert [m.id for m in client.cell_measurement.list(instance_id)] == [mid]


BAD_UPLOADS = {
    "not parquet": (b"Time [s],Current [A]\n0,1\n", "could not be read as Parquet"),
    "no rows": (parquet_bytes(discharge_frame().head(0)), "has no rows"),
    "no voltage": (parquet_bytes(discharge_frame().drop(VOLTAGE)), "'Voltage [V]' is missing"),
    "no time": (parquet_bytes(discharge_frame().drop(TIME)), "'Time [s]' is missing"),
    "no step count": (parquet_bytes(discharge_frame().drop(STEP)), "'Step count' is missing"),
    "text voltage": (
        parquet_bytes(discharge_frame().with_columns(pl.col(VOLTAGE).cast(pl.String))),
        "'Voltage [V]' must be numeric",
    ),
    "time goes back": (
        parquet_bytes(
            discharge_frame().with_columns(
                pl.when(pl.int_range(pl.len()) == 150).then(140.0).otherwise(pl.col(TIME)).alias(TIME)
            )
        ),
        "at row 150 time is 140 s, before the 149 s of row 149",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_upload_ends_failed_naming_the_problem(client, sandbox, case):
    body, reason = BAD_UPLOADS[case]
    _, instance_id = new_instance(client, "bad")
    mid = raw_upload(client, instance_id, "bad upload", body)

    with pytest.raises(MeasurementProcessingError) as caught:
        client.cell_measurement.wait_for_processing(mid)
    assert reason in caught.value.failures[mid]
    failed = client.cell_measurement.get(mid)
    assert failed.processing_status == "failed" and reason in failed.processing_error
    assert (failed.row_count, failed.step_count) == (None, None)
    with pytest.raises(IonworksError) as refused:
        client.cell_measurement.steps_and_cycles(mid)
    assert refused.value.error_code == "PROCESSING_FAILED" and reason in refused.value.message

    client.cell_measurement.delete(mid)
    assert list(client.cell_measurement.list(instance_id)) == []
    assert not (sandbox.data_dir / "objects" / mid).exists()


def test_client_create_raises_when_the_server_rejects_the_upload(client):
    _, instance_id = new_instance(client)
    with pytest.raises(MeasurementProcessingError, match="'Voltage \\[V\\]' is missing") as caught:
        _upload(client, instance_id, discharge_frame().drop(VOLTAGE), name="no-voltage")
    assert client.cell_measurement.get(caught.value.measurement_id).processing_status == "failed"


def test_large_uploads_are_processed_in_the_background(client):
    _, instance_id = new_instance(client, "large")
    frame = discharge_frame(points_per_step=INLINE_ROW_LIMIT // 3 + 1)
    bundle = _upload(client, instance_id, frame)
    assert bundle.processing_status == "pending"  # answered before processing; the client waited for "ready"
    settled = client.cell_measurement.get(bundle.id)
    assert (settled.processing_status, settled.row_count, settled.step_count) == ("ready", frame.height, 3)

    broken = client.cell_measurement.create(
        instance_id, {"measurement": {"name": "broken"}, "time_series": frame.drop(VOLTAGE)}, wait_for_processing=False
    )
    assert broken.processing_status == "pending"
    with pytest.raises(MeasurementProcessingError, match="Voltage"):
        client.cell_measurement.wait_for_processing(broken.id)


def test_lists_filter_by_name_tags_time_and_project(client, sandbox):
    _, instance_id = new_instance(client)
    frame = discharge_frame(points_per_step=20)
    a = _upload(client, instance_id, frame, name="alpha", tags=["HPPC", "25degC"])
    b = _upload(client, instance_id, frame, name="beta", tags=["hppc"], start_time="2025-03-01T00:00:00Z")
    c = _upload(client, instance_id, frame, name="gamma")
    listed = client.cell_measurement.list
    assert [m.id for m in listed(instance_id, order_by="name", order="asc")] == [a.id, b.id, c.id]
    assert [m.id for m in listed(instance_id, name_exact="beta")] == [b.id]
    assert {m.id for m in listed(instance_id, name="A")} == {a.id, b.id, c.id}
    assert [m.id for m in listed(instance_id, tags_all=["hppc", "25DEGC"])] == [a.id]
    assert {m.id for m in listed(instance_id, tags_any=["hppc", "none"])} == {a.id, b.id}
    assert [m.id for m in listed(instance_id, started_after="2025-01-01")] == [b.id]
    assert [
        m.id
        for m in listed(instance_id, measurement_type="time_series", limit=1, offset=2, order_by="name", order="asc")
    ] == [c.id]

    by_project = client.cell_measurement.list_by_project(sandbox.project_id, tags_all=["HPPC"], limit=1000)
    assert {a.id, b.id} <= {m.id for m in by_project} and c.id not in {m.id for m in by_project}
    assert [
        m.id
        for m in client.cell_measurement.list_by_project(sandbox.project_id, q="gamma", limit=1000)
        if m.cell_instance_id == instance_id
    ] == [c.id]


def test_patch_and_delete(client, sandbox):
    _, instance_id = new_instance(client)
    frame = discharge_frame(points_per_step=20)
    first = _upload(client, instance_id, frame, name="one")
    second = _upload(client, instance_id, frame, name="two")
    updated = client.cell_measurement.update(
        first.id, {"notes": "checked", "tags": ["b", "A", "a"], "end_time": "2025-03-02T00:00:00Z"}
    )
    assert (updated.notes, updated.tags, updated.end_time) == ("checked", ["A", "b"], "2025-03-02T00:00:00Z")
    assert updated.row_count == frame.height
    assert _status(lambda: client.cell_measurement.update(second.id, {"name": "one"})) == 409
    assert _status(lambda: client.cell_measurement.update(second.id, {"processing_status": "ready"})) == 400
    assert _status(lambda: client.cell_measurement.update(second.id, {"tags": "not-a-list"})) == 400

    client.cell_measurement.delete(second.id)
    assert _status(lambda: client.cell_measurement.get(second.id)) == 404
    assert not (sandbox.data_dir / "objects" / second.id).exists()
    assert [m.id for m in client.cell_measurement.list(instance_id)] == [first.id]


def test_other_organization_cannot_reach_measurements(client, other_org_client, sandbox):
    _, instance_id = new_instance(client, "private")
    mid = _upload(client, instance_id, discharge_frame(points_per_step=20)).id
    for call in (
        lambda: other_org_client.cell_measurement.get(mid),
        lambda: other_org_client.cell_measurement.time_series(mid),
        lambda: other_org_client.cell_measurement.steps(mid),
        lambda: other_org_client.cell_measurement.steps_and_cycles(mid),
        lambda: other_org_client.cell_measurement.update(mid, {"notes": "x"}),
        lambda: other_org_client.cell_measurement.delete(mid),
        lambda: other_org_client.cell_measurement.list(instance_id),
        lambda: other_org_client.cell_measurement.list_by_project(sandbox.project_id),
        lambda: other_org_client.post(
            f"/cell_instances/{instance_id}/cell_measurements/initiate-upload", {"measurement": {"name": "x"}}
        ),
        lambda: client.cell_measurement.get("no-such-measurement"),
        lambda: client.post("/cell_measurements/no-such-upload/confirm-upload", {"measurement": {"name": "x"}}),
    ):
        assert _status(call) == 404
    assert client.cell_measurement.get(mid).id == mid


def test_data_survives_a_restart(client, sandbox):
    spec_id, instance_id = new_instance(client, "durable")
    frame = discharge_frame(points_per_step=30)
    mid = _upload(client, instance_id, frame).id
    sandbox.restart()
    assert client.cell_spec.get(spec_id).id == spec_id
    assert client.cell_measurement.get(mid).processing_status == "ready"
    assert client.cell_measurement.time_series(mid).equals(frame)
    assert client.cell_measurement.steps(mid).height == 3




def test_confirmed_data_cannot_be_replaced_through_its_upload_url(client):
    _, instance_id = new_instance(client)
    name = unique("sealed")
    started = client.post(f"/cell_instances/{instance_id}/cell_measurements/initiate-upload", {"measurement": {"name": name}})
    target = next(u for u in started["uploads"] if u["filename"] == "time_series.parquet")["signed_url"]
    assert httpx.put(target, content=parquet_bytes(discharge_frame())).status_code == 200
    client.post(
        f"/cell_measurements/{started['measurement_id']}/confirm-upload",
        {"cell_instance_id": instance_id, "measurement": {"name": name}, "measurement_type": "time_series"},
    )
    replaced = httpx.put(target, content=b"not the measured data")
    assert replaced.status_code == 409 and replaced.json()["error_code"] == "CONFLICT"
    assert client.cell_measurement.time_series(started["measurement_id"]).height == discharge_frame().height
