"""Protocol and study tasks against the live sandbox."""

from __future__ import annotations

import pytest
from prefect import flow

from ionworks_prefect import (
    ConvertedProtocol,
    ProtocolInvalid,
    assign_to_study,
    convert_protocol,
    find_protocol_inputs,
    upload_measurement,
    validate_protocol,
)

from .measurement_frames import discharge_frame, new_instance, unique
from .protocols import CCCV

pytestmark = pytest.mark.usefixtures("prefect_server", "sandbox")


def test_validate_and_find_inputs():
    parameterized = CCCV.replace("value: 1\n          ends:\n            - \"Voltage < 2.7\"",
                                 "value: input[\"C-rate\"]\n          ends:\n            - \"Voltage < 2.7\"")

    @flow
    def check():
        return (validate_protocol(CCCV), validate_protocol(CCCV.replace("mode: Voltage", "mode: Teleport")),
                find_protocol_inputs(parameterized))

    good, bad, inputs = check()
    assert good.valid and good.error is None
    assert not bad.valid and bad.error
    assert inputs == ["C-rate"]
    with pytest.raises(ProtocolInvalid, match="not valid"):
        flow(lambda: validate_protocol(CCCV.replace("mode: Voltage", "mode: Teleport"), raise_if_invalid=True))()


def test_convert_returns_bytes_writes_files_and_caches(tmp_path):
    @flow
    def convert_twice():
        first = convert_protocol(CCCV, "maccor", nominal_capacity_ah=5.0, return_state=True)
        second = convert_protocol(CCCV, "maccor", nominal_capacity_ah=5.0, return_state=True)
        written = convert_protocol(CCCV, "biologic_bttest", output_dir=tmp_path / "cycler", nominal_capacity_ah=5.0,
                                   return_state=True)
        return first, second, written

    first, second, written = convert_twice()
    maccor: ConvertedProtocol = first.result()
    assert maccor.target == "maccor" and maccor.content and maccor.filename.startswith("protocol")
    assert second.name == "Cached" and second.result().content == maccor.content
    assert written.name == "Completed"  # writing files is never skipped by the cache
    biologic = written.result()
    assert (tmp_path / "cycler" / biologic.filename).read_bytes() == biologic.content


def test_unconvertible_protocol_is_reported():
    with pytest.raises(ProtocolInvalid, match="Teleport") as caught:
        flow(lambda: convert_protocol(CCCV.replace("mode: Voltage", "mode: Teleport"), "maccor"))()
    assert caught.value.error and "convert protocol failed" not in caught.value.error


def test_assign_to_study_by_name_is_idempotent(client):
    _, instance_id = new_instance(client)
    measurement = upload_measurement.fn(discharge_frame(), instance_id, "rpt-0")
    name = unique("study")

    @flow
    def assign():
        return assign_to_study(name, [measurement.id], by_name=True)

    first, again = assign(), assign()
    assert again.study_id == first.study_id
    assert [m["id"] for m in client.study.list_measurements(first.study_id)["items"]] == [measurement.id]
    assert [s.id for s in client.study.list(name_exact=name)] == [first.study_id]
