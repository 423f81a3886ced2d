"""Measurement data before upload: reading cycler files, validating with the client's rules, content digests."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Union

import pandas as pd
import polars as pl
from ionworks.validators import MeasurementValidationError, validate_measurement_data

from .exceptions import InvalidMeasurementError

FrameLike = Union[pl.DataFrame, pd.DataFrame]
MeasurementData = Union[pl.DataFrame, pd.DataFrame, str, Path]

#: Columns of an Ionworks-style table; a CSV that has them is read as is, anything else goes to ionworksdata.
STANDARD_COLUMNS = frozenset({"Time [s]", "Step count"})

_COLUMN_BY_CODE_PREFIX = {
    "current_sign": "Current [A]",
    "time_": "Time [s]",
    "step_count": "Step count",
    "ocp_voltage": "Voltage [V]",
}


def as_polars(data: Any, *, what: str = "measurement data") -> pl.DataFrame:
    """A polars frame from a polars or pandas frame (or a column dict).

    Example:
        >>> as_polars(pd.DataFrame({"Step count": [0]})).columns
        ['Step count']
    """
    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pd.DataFrame):
        return pl.from_pandas(data)
    if isinstance(data, dict):
        return pl.DataFrame(data)
    raise InvalidMeasurementError(f"{what} must be a polars or pandas DataFrame or a file path, "
                                  f"not {type(data).__name__}")


def read_measurement_file(path: str | Path, *, reader: str | None = None) -> pl.DataFrame:
    """Read a cycler file into an Ionworks time-series frame.

    Parquet and Ionworks-style CSV (with ``Time [s]`` and ``Step count``) are read with polars; any other
    file, or any file when ``reader`` is given, is read with ``ionworksdata.read.time_series`` (Maccor,
    Neware, Arbin, BioLogic, Novonix, BaSyTec, ... exports; discharge current positive).

    Example:
        >>> frame = read_measurement_file("runs/cell7_rpt.mpt")
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise InvalidMeasurementError("Measurement file not found", file=str(file))
    try:
        suffix = file.suffix.lower()
        if reader is None and suffix == ".parquet":
            return pl.read_parquet(file)
        if reader is None and suffix == ".csv":
            frame = pl.read_csv(file)
            if STANDARD_COLUMNS <= set(frame.columns):
                return frame
        import ionworksdata

        return ionworksdata.read.time_series(file, reader=reader)
    except InvalidMeasurementError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        raise InvalidMeasurementError(f"Could not read the cycler file: {exc}", file=str(file)) from exc


def load_measurement(data: MeasurementData, *, reader: str | None = None) -> tuple[pl.DataFrame, str | None]:
    """The frame to upload and the file it came from (None for in-memory frames).

    Example:
        >>> frame, source = load_measurement("data/rpt.csv")
    """
    if isinstance(data, (str, Path)):
        return read_measurement_file(data, reader=reader), str(Path(data).expanduser().resolve())
    return as_polars(data), None


def _column_for(code: str, payload: dict[str, Any]) -> str | None:
    column = payload.get("column") or payload.get("source_column")
    if column:
        return str(column)
    missing = payload.get("missing")
    if isinstance(missing, (list, tuple)) and missing:
        return str(missing[0])
    return next((col for prefix, col in _COLUMN_BY_CODE_PREFIX.items() if code.startswith(prefix)), None)


def _row_for(payload: dict[str, Any]) -> int | None:
    for key in ("row_index", "worst_row_index", "first_idx"):
        if payload.get(key) is not None:
            return int(payload[key])
    examples = payload.get("examples")
    if isinstance(examples, list) and examples and isinstance(examples[0], dict) and "row_index" in examples[0]:
        return int(examples[0]["row_index"]) + 1  # a transition example names the row before the bad value
    return None


def check_measurement(
    frame: pl.DataFrame,
    *,
    file: str | None = None,
    data_type: str | None = None,
    strict: bool = False,
) -> None:
    """Validate a time series with the official client's rules; raise :class:`InvalidMeasurementError`.

    The error names the file (if any), the column and the row of the first problem and lists every issue.

    Example:
        >>> check_measurement(frame, file="rpt.csv")
    """
    if frame.height == 0:
        raise InvalidMeasurementError("Measurement has no rows", file=file)
    try:
        validate_measurement_data(frame, strict=strict, data_type=data_type)
    except MeasurementValidationError as exc:
        issues = [{"code": str(i.code), "message": i.message, **i.payload} for i in exc.errors]
        first = exc.errors[0] if exc.errors else None
        message = first.message if first else str(exc.message)
        if len(issues) > 1:
            message += f" (+{len(issues) - 1} more issue(s))"
        raise InvalidMeasurementError(
            message,
            file=file,
            column=_column_for(str(first.code), first.payload) if first else None,
            row=_row_for(first.payload) if first else None,
            issues=issues,
        ) from exc


def frame_digest(frame: pl.DataFrame) -> str:
    """sha256 over column names, types and values; independent of polars' internal hashing.

    Example:
        >>> frame_digest(pl.DataFrame({"a": [1, 2]})) == frame_digest(pl.DataFrame({"a": [1, 2]}))
        True
    """
    digest = hashlib.sha256()
    digest.update(f"{frame.height}\x1e".encode())
    for name in frame.columns:
        series = frame[name]
        digest.update(f"{name}\x1f{series.dtype}\x1e".encode())
        digest.update(series.is_null().to_numpy().tobytes())
        if series.dtype.is_numeric() or series.dtype == pl.Boolean:
            digest.update(series.cast(pl.Float64).fill_null(0.0).to_numpy().tobytes())
        else:
            digest.update("\x1f".join("" if v is None else str(v) for v in series.to_list()).encode())
    return digest.hexdigest()


def step_count(frame: pl.DataFrame) -> int:
    """Distinct steps in a time series (0 without a ``Step count`` column)."""
    return int(frame["Step count"].n_unique()) if "Step count" in frame.columns else 0
