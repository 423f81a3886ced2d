"""Sanity checks on a time series before anything is sent: each names the file, column and first bad row."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from prefect import flow

from ionworks_prefect import CellTarget, InvalidMeasurementError, MeasurementSanityError, upload_measurement
from ionworks_prefect.cycler_files import read_measurement_file
from ionworks_prefect.measurement_checks import check_measurement
from ionworks_prefect.measurement_data import as_polars, frame_digest, stage_measurement

from .measurement_frames import CURRENT, STEP, TIME, VOLTAGE, discharge_frame, unique


def _set(frame: pl.DataFrame, column: str, row: int, value) -> pl.DataFrame:
    return frame.with_columns(pl.when(pl.int_range(pl.len()) == row).then(value).otherwise(pl.col(column)).alias(column))


def _sanity(frame: pl.DataFrame, **options) -> MeasurementSanityError:
    with pytest.raises(MeasurementSanityError) as caught:
        check_measurement(frame, file="rpt.csv", **options)
    assert caught.value.file == "rpt.csv" and "'rpt.csv'" in str(caught.value)
    return caught.value


@pytest.mark.parametrize(("column", "value"), [(VOLTAGE, float("nan")), (CURRENT, float("inf")), (TIME, float("-inf"))])
def test_values_that_are_not_finite_are_named(column, value):
    error = _sanity(_set(discharge_frame(), column, 150, value))
    assert (error.check, error.column, error.row) == ("finite", column, 150)


def test_a_missing_current_is_named():
    error = _sanity(_set(discharge_frame(), CURRENT, 42, None))
    assert (error.check, error.column, error.row) == ("missing", CURRENT, 42)


def test_voltage_outside_the_window_or_the_default_range():
    error = _sanity(_set(discharge_frame(), VOLTAGE, 7, 13.8))
    assert (error.check, error.column, error.row) == ("voltage_range", VOLTAGE, 7) and "0-6 V" in str(error)
    error = _sanity(discharge_frame(), voltage_window=(2.5, 4.0))  # the rest at 4.10 V is over 4.0 + 0.05
    assert (error.check, error.row) == ("voltage_range", 0)
    check_measurement(discharge_frame(), voltage_window=(2.5, 4.2))


def test_voltages_read_without_their_decimal_separator_say_so():
    error = _sanity(discharge_frame().with_columns(pl.col(VOLTAGE) * 10_000))
    assert error.check == "voltage_range" and "decimal separator" in str(error)


def test_current_beyond_50_c_of_the_rated_capacity():
    frame = discharge_frame(current=1000.0 / 1000)  # 1 A
    check_measurement(frame, rated_capacity=5.0)
    error = _sanity(discharge_frame(current=300.0), rated_capacity=5.0)  # 300 A: 60 C, or 300 mA read as A
    assert (error.check, error.column, error.row) == ("current_range", CURRENT, 100) and "mA read as A" in str(error)


def test_time_running_backwards_names_the_row():
    error = _sanity(_set(discharge_frame(), TIME, 120, 3.0))
    assert (error.check, error.column, error.row) == ("time_monotonic", TIME, 120) and "119.0 s" in str(error)


@pytest.mark.parametrize(("scale", "words"), [(1 / 3600, "hours or days"), (1e7, "milliseconds")])
def test_time_not_in_seconds(scale, words):
    error = _sanity(discharge_frame().with_columns(pl.col(TIME) * scale))
    assert (error.check, error.column) == ("time_units", TIME) and words in str(error)


def test_a_duplicated_column_is_refused_in_a_frame_and_in_a_csv(tmp_path):
    frame = discharge_frame()
    error = _sanity(frame.with_columns(pl.col(VOLTAGE).alias(f"{VOLTAGE}_duplicated_0")))
    assert (error.check, error.column) == ("duplicate_column", VOLTAGE)
    path = tmp_path / "twice.csv"
    path.write_text(f"{TIME},{CURRENT},{VOLTAGE},{VOLTAGE},{STEP}\n0,0,4.1,4.1,0\n")
    with pytest.raises(InvalidMeasurementError, match="appears twice") as caught:
        read_measurement_file(path)
    assert (caught.value.file, caught.value.column) == (str(path), VOLTAGE)


def test_text_in_a_numeric_csv_column_names_column_row_and_text(tmp_path):
    path = tmp_path / "typo.csv"
    frame = discharge_frame().with_columns(pl.col(VOLTAGE).cast(pl.String))
    _set(frame, VOLTAGE, 250, pl.lit("4.0V")).write_csv(path)
    with pytest.raises(InvalidMeasurementError) as caught:
        read_measurement_file(path)
    assert (caught.value.column, caught.value.row) == (VOLTAGE, 250) and "'4.0V'" in str(caught.value)


def test_text_in_a_pandas_object_column_names_column_and_row():
    frame = discharge_frame().to_pandas()
    frame[CURRENT] = frame[CURRENT].astype(object)
    frame.loc[5, CURRENT] = "n/a"
    with pytest.raises(InvalidMeasurementError) as caught:
        as_polars(frame)
    assert (caught.value.column, caught.value.row) == (CURRENT, 5) and "'n/a'" in str(caught.value)


def test_numbers_written_with_decimal_commas_are_named():
    frame = discharge_frame().with_columns(pl.col(VOLTAGE).round(3).cast(pl.String).str.replace(".", ",", literal=True))
    error = _sanity(frame)
    assert (error.check, error.column, error.row) == ("decimal_separator", VOLTAGE, 0)


def test_semicolon_csv_with_decimal_commas_is_read(tmp_path):
    path = tmp_path / "excel.csv"
    frame = discharge_frame()
    text = frame.write_csv(separator=";", float_precision=6).replace(".", ",")
    path.write_text(text)
    read = read_measurement_file(path)
    assert read[VOLTAGE].to_list() == pytest.approx(frame[VOLTAGE].to_list(), abs=1e-6)


def test_integer_looking_first_rows_do_not_decide_the_column_type(tmp_path):
    frame = pl.DataFrame({TIME: np.arange(20_000, dtype=float), CURRENT: np.r_[np.zeros(15_000), np.full(5_000, 4.4e-7)],
                          VOLTAGE: np.full(20_000, 3.7), STEP: np.r_[np.zeros(15_000, int), np.ones(5_000, int)]})
    path = tmp_path / "late-decimals.csv"
    frame.write_csv(path)
    assert read_measurement_file(path)[CURRENT].max() == pytest.approx(4.4e-7)


def test_digest_is_vectorised_and_follows_values():
    frame = discharge_frame().with_columns(pl.lit("cc").alias("Label"))
    assert frame_digest(frame) == frame_digest(frame.clone())
    assert frame_digest(frame) != frame_digest(_set(frame, VOLTAGE, 3, 4.0))
    assert frame_digest(frame) != frame_digest(frame.with_columns(pl.lit("cv").alias("Label")))


def test_a_csv_is_streamed_to_parquet_and_a_frame_written_in_the_background(tmp_path):
    frame = discharge_frame().with_columns(pl.lit("cc").alias("Label"))
    frame.write_csv(tmp_path / "rpt.csv")
    with stage_measurement(tmp_path / "rpt.csv") as staged:  # never in memory whole
        assert staged.frame is None and staged.writing is None
        assert frame_digest(pl.read_parquet(staged.path)) == staged.digest() == frame_digest(read_measurement_file(
            tmp_path / "rpt.csv"))
        assert staged.height == frame.height and staged.step_count() == 3
    assert not staged.path.exists()
    with stage_measurement(frame) as staged:
        assert staged.frame is not None and staged.writing is not None
        assert frame_digest(pl.read_parquet(staged.path)) == staged.digest() == frame_digest(frame)
        assert staged.writing.done()
    frame.write_parquet(tmp_path / "rpt.parquet")
    with stage_measurement(tmp_path / "rpt.parquet") as staged:  # sent as it is, read column by column
        assert staged.frame is None and staged.path == tmp_path / "rpt.parquet" and staged.digest() == frame_digest(frame)


def test_a_streamed_csv_equals_the_whole_read_across_pieces(tmp_path, monkeypatch):
    import ionworks_prefect.ionworks_csv as ionworks_csv

    monkeypatch.setattr(ionworks_csv, "PIECE_BYTES", 4096)  # many pieces, quoted line breaks among them
    rows = 30_000
    notes = ['a,"b"\nc' if i % 777 == 0 else "x" for i in range(rows)]
    frame = pl.DataFrame({TIME: np.arange(rows, dtype=float), CURRENT: np.ones(rows), VOLTAGE: np.full(rows, 3.7),
                          STEP: np.arange(rows) // 1000, "Note": notes})
    frame.write_csv(tmp_path / "quoted.csv")
    ionworks_csv.write_ionworks_parquet(tmp_path / "quoted.csv", tmp_path / "out.parquet")
    assert pl.read_parquet(tmp_path / "out.parquet").equals(read_measurement_file(tmp_path / "quoted.csv"))
    _set(frame.with_columns(pl.col(VOLTAGE).cast(pl.String)), VOLTAGE, 25_000, pl.lit("4.0V")).write_csv(
        tmp_path / "typo.csv")
    with pytest.raises(InvalidMeasurementError) as caught:
        ionworks_csv.write_ionworks_parquet(tmp_path / "typo.csv", tmp_path / "out.parquet")
    assert (caught.value.column, caught.value.row) == (VOLTAGE, 25_000) and "'4.0V'" in str(caught.value)



def test_a_quoted_field_never_closed_is_named_by_line_row_and_column_on_both_reads(tmp_path, monkeypatch):
    import ionworks_prefect.ionworks_csv as ionworks_csv

    monkeypatch.setattr(ionworks_csv, "PIECE_BYTES", 4096)  # the quote opens early: every later piece is after it
    rows = 30_000
    notes = ['a,"b"\nc' if i % 777 == 0 else "x" for i in range(rows)]  # quoted line breaks stay allowed
    frame = pl.DataFrame({TIME: np.arange(rows, dtype=float), CURRENT: np.ones(rows), VOLTAGE: np.full(rows, 3.7),
                          STEP: np.arange(rows) // 1000, "Note": notes})
    text = frame.write_csv()
    at = text.index("\n2000.0,") + 1  # the line of row 2000
    path = tmp_path / "stray.csv"
    path.write_text(text[:at] + text[at:].replace(",3.7,", ',"3.7,', 1))
    for read in (lambda: ionworks_csv.write_ionworks_parquet(path, tmp_path / "out.parquet"),
                 lambda: read_measurement_file(path)):
        with pytest.raises(InvalidMeasurementError) as caught:
            read()
        assert (caught.value.column, caught.value.row) == (VOLTAGE, 2000)
        assert "Line 2005 " in str(caught.value)  # three quoted line breaks before it
        assert "never properly closed" in str(caught.value) and len(str(caught.value)) < 400

@flow
def upload_flow(data, cell, name=None, **options):
    return upload_measurement(data, cell, name, **options)


@pytest.mark.usefixtures("prefect_server", "sandbox")
def test_a_failed_sanity_check_creates_nothing(client):
    spec = unique("sanity-spec")
    with pytest.raises(MeasurementSanityError) as caught:
        upload_flow(_set(discharge_frame(), VOLTAGE, 9, float("nan")), CellTarget(specification=spec, instance="c1"), "nan")
    assert (caught.value.column, caught.value.row) == (VOLTAGE, 9)
    assert list(client.cell_spec.list(name_exact=spec)) == []
