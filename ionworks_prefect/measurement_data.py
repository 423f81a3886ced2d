"""Measurement data before upload: frames from files or memory, and their content digest.

Reading files is :mod:`ionworks_prefect.cycler_files`; checking frames is :mod:`ionworks_prefect.measurement_checks`.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import pandas as pd
import polars as pl

from .cycler_files import IONWORKS, ReaderChoice, detect_format, read_measurement_file, reader_for
from .exceptions import InvalidMeasurementError
from .ionworks_csv import write_ionworks_parquet

FrameLike = Union[pl.DataFrame, pd.DataFrame]
MeasurementData = Union[pl.DataFrame, pd.DataFrame, str, Path]


def _pandas_text_cell(frame: pd.DataFrame) -> Optional[tuple[str, int, Any]]:
    """The first (column, row, value) of an object column holding something that is not a number."""
    for name in frame.columns[frame.dtypes == object]:
        column = frame[name]
        numbers = pd.to_numeric(column, errors="coerce")
        bad = (numbers.isna() & column.notna()).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            return str(name), row, column.iloc[row]
    return None


def as_polars(data: Any, *, what: str = "measurement data") -> pl.DataFrame:
    """A polars frame from a polars or pandas frame (or a column dict).

    A pandas object column mixing numbers and text is refused naming its column, row and value.

    Example:
        >>> as_polars(pd.DataFrame({"Step count": [0]})).columns
        ['Step count']
    """
    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pd.DataFrame):
        try:
            return pl.from_pandas(data)
        except Exception as exc:  # noqa: BLE001 - pyarrow refuses mixed object columns in many ways
            cell = _pandas_text_cell(data)
            if cell is None:
                raise InvalidMeasurementError(f"{what} could not be converted to a table: {exc}") from exc
            column, row, value = cell
            raise InvalidMeasurementError(f"Column {column!r} holds {value!r} among numbers", column=column,
                                          row=row) from None
    if isinstance(data, dict):
        return pl.DataFrame(data)
    raise InvalidMeasurementError(f"{what} must be a polars or pandas DataFrame or a file path, "
                                  f"not {type(data).__name__}")


def load_measurement(
    data: MeasurementData, *, reader: ReaderChoice = None, options: Optional[dict[str, Any]] = None,
) -> tuple[pl.DataFrame, str | None]:
    """The frame to upload and the file it came from (None for in-memory frames).

    Example:
        >>> frame, source = load_measurement("data/rpt.csv")
    """
    if isinstance(data, (str, Path)):
        frame = read_measurement_file(data, reader=reader, options=options)
        return frame, str(Path(data).expanduser().resolve())
    return as_polars(data), None


def frame_digest(frame: pl.DataFrame) -> str:
    """sha256 over column names, types and values; independent of polars' internal hashing.

    Numbers are hashed as float64 buffers and text as one joined string, with no per-row Python.

    Example:
        >>> frame_digest(pl.DataFrame({"a": [1, 2]})) == frame_digest(pl.DataFrame({"a": [1, 2]}))
        True
    """
    return _digest(frame.height, (frame[name] for name in frame.columns))


def _digest(height: int, columns: Any) -> str:
    digest = hashlib.sha256()
    digest.update(f"{height}\x1e".encode())
    for series in columns:
        name = series.name
        digest.update(f"{name}\x1f{series.dtype}\x1e".encode())
        # Chunk by chunk: the same bytes as the whole column's buffers, without joining them into one first.
        chunks = series.get_chunks()
        for chunk in chunks:
            digest.update(memoryview(chunk.is_null().to_numpy()))
        if series.dtype.is_numeric() or series.dtype == pl.Boolean:
            for chunk in chunks:
                digest.update(memoryview(np.ascontiguousarray(chunk.cast(pl.Float64).fill_null(0.0).to_numpy())))
        else:
            digest.update(series.cast(pl.String).fill_null("").str.join("\x1f").item().encode())
    return digest.hexdigest()


def step_count(frame: pl.DataFrame) -> int:
    """Distinct steps in a time series (0 without a ``Step count`` column)."""
    return int(frame["Step count"].n_unique()) if "Step count" in frame.columns else 0


def select_cycles(frame: pl.DataFrame, cycles: tuple[int, int], *, file: str | None = None) -> pl.DataFrame:
    """The rows of ``Cycle count`` in ``cycles`` (first, last; inclusive), renumbered to start at step 0, time 0.

    Example:
        >>> select_cycles(frame, (2, 4))["Cycle count"].unique().to_list()
        [2, 3, 4]
    """
    if "Cycle count" not in frame.columns:
        raise InvalidMeasurementError("cycles= needs a 'Cycle count' column, which this data lacks", file=file,
                                      column="Cycle count")
    first, last = cycles
    kept = frame.filter(pl.col("Cycle count").is_between(first, last))
    if kept.height == 0:
        found = frame["Cycle count"]
        raise InvalidMeasurementError(f"No rows in cycles {first}-{last}; the data has cycles "
                                      f"{found.min()}-{found.max()}", file=file, column="Cycle count")
    shifts = [pl.col("Step count") - pl.col("Step count").min()]
    if "Time [s]" in kept.columns:
        shifts.append(pl.col("Time [s]") - pl.col("Time [s]").min())
    return kept.with_columns(shifts)


@dataclass
class StagedMeasurement:
    """A time series ready to upload: a parquet file, and the frame when it is in memory anyway.

    ``table`` is what the checks read: the in-memory frame, or a scan of the parquet file for an Ionworks-style
    file (sent as it is, or streamed from its CSV). ``path`` is the file to send; a frame's file is written in
    the background (beside the checks), and ``path`` waits for it.
    """

    file: Path
    source: Optional[str]
    frame: Optional[pl.DataFrame] = None
    writing: Optional[Future] = None

    @property
    def path(self) -> Path:
        if self.writing is not None:
            self.writing.result()
        return self.file

    @property
    def table(self) -> pl.LazyFrame:
        return self.frame.lazy() if self.frame is not None else pl.scan_parquet(self.file)

    @property
    def height(self) -> int:
        return self.frame.height if self.frame is not None else pl.scan_parquet(self.file).select(pl.len()).collect().item()

    def column(self, name: str) -> pl.Series:
        return self.frame[name] if self.frame is not None else pl.read_parquet(self.file, columns=[name])[name]

    def digest(self) -> str:
        """:func:`frame_digest` of the data, reading a parquet file one column at a time."""
        if self.frame is not None:
            return frame_digest(self.frame)
        names = pl.read_parquet_schema(self.file)
        return _digest(self.height, (self.column(name) for name in names))

    def step_count(self) -> int:
        """Distinct steps (0 without a ``Step count`` column)."""
        schema = self.table.collect_schema()
        return int(self.table.select(pl.col("Step count").n_unique()).collect().item()) if "Step count" in schema else 0


@contextmanager
def stage_measurement(
    data: MeasurementData,
    *,
    reader: ReaderChoice = None,
    options: Optional[dict[str, Any]] = None,
    cycles: Optional[tuple[int, int]] = None,
) -> Iterator[StagedMeasurement]:
    """The data as a parquet file to upload (temporary, removed on exit), and as a frame when it is in memory.

    An Ionworks-style parquet file is used as it is; an Ionworks-style CSV is streamed into a parquet file a
    piece at a time (:func:`~ionworks_prefect.ionworks_csv.write_ionworks_parquet`). Either is then read
    column by column, so the table is never in memory whole. Anything else (vendor files, ``cycles=``, frames)
    is read once into a frame, which the checks and the digest read while its parquet file is written on a
    background thread (polars releases the GIL).

    Example:
        >>> with stage_measurement("runs/rpt.csv") as staged:
        ...     staged.height
    """
    with tempfile.TemporaryDirectory(prefix="iwp-upload-") as tmp:
        target = Path(tmp) / "time_series.parquet"
        if isinstance(data, (str, Path)):
            file = Path(data).expanduser()
            source = str(file.resolve())
            if cycles is None and file.is_file() and file.stat().st_size and (
                    reader_for(file, reader) or detect_format(file)) == IONWORKS:
                if file.suffix.lower() == ".parquet":
                    yield StagedMeasurement(file, source)
                else:
                    write_ionworks_parquet(file, target)
                    yield StagedMeasurement(target, source)
                return
            frame = read_measurement_file(file, reader=reader, options=options)
        else:
            frame, source = as_polars(data), None
        if cycles is not None:
            frame = select_cycles(frame, cycles, file=source)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="measurement-staging") as pool:
            yield StagedMeasurement(target, source, frame, pool.submit(frame.write_parquet, target))
