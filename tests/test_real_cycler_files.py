"""Real cycler files from other open-source projects (tests/data/real-cycler, origins in its SOURCES.md).

Each file is read with its detected reader and checked (row and step counts, value ranges), then the readable
ones are ingested into the live sandbox through the ingest flow and read back; the others fail with their
documented, typed reason.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from ionworks_prefect import (
    InvalidMeasurementError,
    MeasurementSanityError,
    UnsupportedCyclerFile,
    cycler_files,
    detect_format,
    read_measurement_file,
    upload_measurement,
)
from ionworks_prefect.cycler_files import reader_for
from ionworks_prefect.flows.ingest_cycler_data import PARTIAL_STATE_NAME, ingest_cycler_data
from ionworks_prefect.measurement_checks import check_measurement

from .measurement_frames import new_instance, unique

DATA = Path(__file__).parent / "data" / "real-cycler"

#: file -> (reader, rows, steps, (min V, max V), max |I| in A, last time in s)
READABLE = {
    "beep_arbin_FastCharge_000025_CH8.csv": ("arbin", 248, 1, (3.3009, 3.3012), 0.0, 1790.0),
    "beep_maccor_PredictionDiagnostics_000151_test.052": ("maccor", 333, 1, (3.8625, 3.8683), 4.841, 3.33),
    "beep_maccor_xTESLADIAG_000019_CH70.070": ("maccor", 11669, 95, (2.9998, 4.1009), 9.408, 136345.0),
    "beep_novonix_test_Nova_Form-CH01-01_short.csv": ("novonix", 3942, 3, (0.1371, 3.4266), 0.0539, 62764.5),
    "cellpy_arbin_20160805_test001_45_cc_01.res": ("arbin", 10261, 103, (0.0499, 3.1168), 0.000307, 858777.2),
    "cellpy_biologic_biol.mpr": ("biologic mpr", 23561, 27, (0.1234, 0.9999), 0.000326, 76139.1),
    "cellpy_maccor_two.txt": ("maccor", 213, 1, (0.1377, 0.1514), 0.0, 12720.0),
    "cellpy_neware_uio.csv": ("neware", 9065, 32, (0.05, 2.957), 0.000992, 518521.0),
    "newarenda_test_2.ndax": ("neware nda", 108563, 216, (0.1995, 3.4062), 0.00317, 93207.6),
}
NEGATIVE_CHANNEL = "newarenda_new_nda_file.nda"  # a Neware test channel reading -0.10..-0.08 V


def _ranges(frame):
    voltage, current = frame["Voltage [V]"], frame["Current [A]"]
    return (voltage.min(), voltage.max()), float(current.abs().max()), frame["Time [s]"].max()


@pytest.mark.parametrize("name", sorted(READABLE))
def test_each_real_file_is_read_by_its_vendor_reader_and_passes_the_checks(name):
    reader, rows, steps, (v_min, v_max), i_max, t_end = READABLE[name]
    assert detect_format(DATA / name) == reader
    frame = read_measurement_file(DATA / name)
    (low, high), current, last = _ranges(frame)
    assert (frame.height, frame["Step count"].n_unique()) == (rows, steps)
    assert low == pytest.approx(v_min, abs=1e-3) and high == pytest.approx(v_max, abs=1e-3)
    assert current == pytest.approx(i_max, rel=1e-2, abs=1e-6) and last == pytest.approx(t_end, rel=1e-4)
    check_measurement(frame, file=name)


def test_decimal_commas_are_read_as_decimals_not_thousands():
    frame = read_measurement_file(DATA / "cellpy_maccor_two.txt")
    assert frame["Voltage [V]"].max() < 1.0  # "0,1514" V, not 1,514 V


@pytest.mark.parametrize("name", ["cellpy_maccor_two.txt", "beep_novonix_test_Nova_Form-CH01-01_short.csv"])
def test_quirks_are_fixed_the_same_across_copy_chunk_boundaries(name, monkeypatch):
    whole = read_measurement_file(DATA / name)
    monkeypatch.setattr(cycler_files, "_CHUNK_BYTES", 997)  # many chunks, boundaries inside lines
    assert read_measurement_file(DATA / name).equals(whole)


def test_a_reader_chosen_by_pattern_wins_over_detection():
    choice = {"*.res": "arbin res", "*_CH*.csv": "arbin"}
    assert reader_for(DATA / "beep_arbin_FastCharge_000025_CH8.csv", choice) == "arbin"
    assert reader_for(DATA / "cellpy_neware_uio.csv", {"*_CH*.csv": "arbin"}) is None
    frame = read_measurement_file(DATA / "beep_arbin_FastCharge_000025_CH8.csv", reader={"*_CH8.csv": "arbin"})
    assert frame.height == 248
    with pytest.raises(InvalidMeasurementError, match="Unknown reader 'no such reader'"):
        read_measurement_file(DATA / "cellpy_neware_uio.csv", reader="no such reader")


def test_a_file_in_no_known_format_asks_for_a_reader(tmp_path):
    path = tmp_path / "lab-export.csv"
    path.write_text("t,volts,amps\n0,3.7,0\n")
    with pytest.raises(UnsupportedCyclerFile) as caught:
        read_measurement_file(path)
    assert caught.value.format == "unknown" and "reader=" in caught.value.remedy and caught.value.file == str(path)


def test_res_without_mdbtools_names_the_package_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no mdb-export on it
    assert shutil.which("mdb-export") is None
    with pytest.raises(UnsupportedCyclerFile) as caught:
        read_measurement_file(DATA / "cellpy_arbin_20160805_test001_45_cc_01.res")
    assert caught.value.format == "Arbin .res" and "apt-get install mdbtools" in str(caught.value)


def test_mpr_without_galvani_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "galvani", None)  # import galvani -> ImportError
    with pytest.raises(UnsupportedCyclerFile) as caught:
        read_measurement_file(DATA / "cellpy_biologic_biol.mpr")
    assert caught.value.format == "BioLogic .mpr" and "ionworks-prefect[biologic-mpr]" in caught.value.remedy


def test_a_channel_outside_0_to_6_volts_needs_its_window():
    frame = read_measurement_file(DATA / NEGATIVE_CHANNEL)
    assert (frame.height, frame["Step count"].n_unique()) == (439, 6)
    with pytest.raises(MeasurementSanityError) as caught:
        check_measurement(frame, file=NEGATIVE_CHANNEL)
    assert (caught.value.check, caught.value.column, caught.value.row) == ("voltage_range", "Voltage [V]", 0)
    assert "voltage_window=" in str(caught.value)
    check_measurement(frame, file=NEGATIVE_CHANNEL, voltage_window=(-0.2, 0.1))


@pytest.mark.usefixtures("prefect_server", "sandbox")
async def test_real_files_are_ingested_into_the_sandbox_and_read_back(client):
    cell = {"specification": unique("real-cycler"), "instance": unique("cell")}
    files = [str(DATA / name) for name in (*sorted(READABLE), NEGATIVE_CHANNEL)]
    state = await ingest_cycler_data(cell=cell, files=files, return_state=True)
    assert state.name == PARTIAL_STATE_NAME and state.message.startswith("1 of 10 cycler file(s)")
    report = await state.result()
    by_name = {Path(f.file).name: f for f in report.files}
    failed = by_name[NEGATIVE_CHANNEL]
    assert failed.status == "failed" and "outside the plausible 0-6 V" in failed.reason and "row 0" in failed.reason
    for name, (_, rows, steps, (v_min, v_max), _, _) in READABLE.items():
        outcome = by_name[name]
        assert outcome.status == "uploaded" and outcome.rows == rows, (name, outcome.reason)
        stored = client.cell_measurement.get(outcome.measurement_id)
        assert (stored.processing_status, stored.row_count, stored.step_count) == ("ready", rows, steps), name
        series = client.cell_measurement.time_series(outcome.measurement_id, use_cache=False)
        assert series.height == rows
        assert series["Voltage [V]"].min() == pytest.approx(v_min, abs=1e-3), name
        assert series["Voltage [V]"].max() == pytest.approx(v_max, abs=1e-3), name


@pytest.mark.usefixtures("prefect_server", "sandbox")
def test_cycles_of_a_long_test_are_selected_explicitly(client):
    _, instance_id = new_instance(client, "cycles")
    uploaded = upload_measurement.fn(DATA / "newarenda_test_2.ndax", instance_id, "cycles 2-4", cycles=(2, 4))
    assert (uploaded.row_count, uploaded.step_count) == (2413, 12)
    series = client.cell_measurement.time_series(uploaded.id, use_cache=False)
    assert series["Cycle count"].unique().sort().to_list() == [2, 3, 4]
    assert (series["Time [s]"].min(), series["Step count"].min()) == (0.0, 0)
    with pytest.raises(InvalidMeasurementError, match="No rows in cycles 90-99; the data has cycles 0-53"):
        upload_measurement.fn(DATA / "newarenda_test_2.ndax", instance_id, "none", cycles=(90, 99))
