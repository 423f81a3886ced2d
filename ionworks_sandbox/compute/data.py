"""An objective's measured data: every ``data`` form the client sends, read into time, current and voltage.

Accepted forms (contract §9.2): a column dict; ``{"data": <column dict | "db:<id>">, "options"?, "time_range"?}``;
``{"time_series": ..., "steps"?}``; ``{"data", "metadata"}``; a bare ``"db:<id>"``; and ``"<entry>.<key>"``
naming a value given by an earlier entry element.

Example:
    >>> spec = parse_data({"Time [s]": [0, 10], "Current [A]": [5, 5], "Voltage [V]": [4.0, 3.9]}, "data", {})
    >>> series = load_series(spec, load_measurement)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from .errors import PipelineInputError, UnsupportedFeature

TIME, CURRENT, VOLTAGE, STEP = "Time [s]", "Current [A]", "Voltage [V]", "Step count"
TEMPERATURE = "Temperature [degC]"
REQUIRED_COLUMNS = (TIME, CURRENT, VOLTAGE)
#: A row is at rest when its current is within this fraction of the largest current (or 0.1 mA).
REST_FRACTION = 1e-3
#: The rested voltage is averaged over this last part of the opening rest, or its second half when shorter: a
#: cycler's ~1 mV noise averaged over a minute or so of rows (3-4 at a 20 s period) still moves every fitted window,
#: while a rested cell moves by under 0.1 mV over its last five minutes (the LG M50 data in tests/data).
REST_TAIL_S = 300.0
SUPPORTED_LOADER_OPTIONS = ("first_step", "last_step", "remove_duplicates", "sort", "transforms")
SUPPORTED_TRANSFORMS = ("remove_duplicates", "sort")
_WRAPPER_KEYS = {"data", "options", "time_range", "metadata"}
#: Spacing given to rows that repeat a time stamp.
TIME_NUDGE_S = 1e-3

MeasurementLoader = Callable[[str], pl.DataFrame]


@dataclass(frozen=True)
class DataSpec:
    """Where an objective's data comes from and how to cut it; nothing is loaded yet."""

    field: str
    columns: Mapping[str, Any] | None = None
    measurement_id: str | None = None
    first_step: int | None = None
    last_step: int | None = None
    sort: bool = False
    time_range: tuple[float, float] | None = None
    source: str = field(default="inline")


@dataclass(frozen=True)
class Series:
    """Measured data ready for a model: time from 0 (strictly increasing), current (discharge > 0), voltage,
    and the measured temperature in degC when the data has a ``Temperature [degC]`` column."""

    time: np.ndarray
    current: np.ndarray
    voltage: np.ndarray
    source: str
    temperature: np.ndarray | None = None

    @property
    def voltage_range(self) -> tuple[float, float]:
        return float(self.voltage.min()), float(self.voltage.max())

    @property
    def rested_voltage(self) -> float | None:
        """The open-circuit voltage the data opens with: the mean voltage over the last ``REST_TAIL_S`` of the
        rest before the current starts (over its second half when the rest is shorter), else ``None``."""
        threshold = max(REST_FRACTION * float(np.max(np.abs(self.current))), 1e-4)
        moving = np.flatnonzero(np.abs(self.current) > threshold)
        if moving.size == 0 or moving[0] == 0:
            return None
        end = moving[0] - 1
        tail = self.time[: end + 1] >= self.time[end] - min(REST_TAIL_S, (self.time[end] - self.time[0]) / 2)
        return float(np.mean(self.voltage[: end + 1][tail]))


def parse_data(value: Any, field_path: str, references: Mapping[str, Mapping[str, Any]]) -> DataSpec:
    """Validate the shape of an objective's ``data`` (no loading) and say where it comes from."""
    if isinstance(value, str):
        return _parse_string(value, field_path, references)
    if not isinstance(value, dict) or not value:
        raise PipelineInputError(field_path, "data must be a column object, a wrapper object or 'db:<measurement id>'")
    if "time_series" in value:
        extra = sorted(set(value) - {"time_series", "steps"})
        if extra:
            raise PipelineInputError(f"{field_path}.{extra[0]}", "unexpected key beside 'time_series'")
        return parse_data(value["time_series"], f"{field_path}.time_series", references)
    if "data" in value and set(value) <= _WRAPPER_KEYS | {"analysis"}:
        if value.get("analysis") is not None:
            raise UnsupportedFeature(f"{field_path}.analysis", "analysis", ["time series data"])
        inner = parse_data(value["data"], f"{field_path}.data", references)
        options = _parse_loader_options(value.get("options"), f"{field_path}.options")
        window = _parse_time_range(value.get("time_range"), f"{field_path}.time_range")
        return DataSpec(**{**inner.__dict__, **options, "time_range": window, "field": field_path})
    return DataSpec(field=field_path, columns=_check_columns(value, field_path))


def _parse_string(value: str, field_path: str, references: Mapping[str, Mapping[str, Any]]) -> DataSpec:
    if value.startswith("db:"):
        if not value[3:]:
            raise PipelineInputError(field_path, "'db:' must be followed by a measurement id")
        return DataSpec(field=field_path, measurement_id=value[3:], source=value)
    if value.startswith(("file:", "folder:")):
        raise PipelineInputError(
            field_path,
            f"{value.split(':')[0]}: paths are read by the client before sending; send the data inline, "
            "or upload it as a measurement and refer to it as 'db:<measurement id>'",
        )
    element, _, key = value.partition(".")
    if key and element in references and key in references[element]:
        return parse_data(references[element][key], field_path, references)
    raise PipelineInputError(field_path, f"{value!r} is neither 'db:<measurement id>' nor '<entry element>.<key>'")


def _check_columns(columns: Mapping[str, Any], field_path: str) -> Mapping[str, Any]:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise PipelineInputError(field_path, f"column {missing[0]!r} is missing (columns: {sorted(columns)})")
    lengths = {name: len(columns[name]) for name in REQUIRED_COLUMNS if isinstance(columns[name], list)}
    if len(lengths) != len(REQUIRED_COLUMNS) or len(set(lengths.values())) != 1:
        raise PipelineInputError(field_path, f"columns {list(REQUIRED_COLUMNS)} must be lists of equal length")
    return columns


def _parse_loader_options(options: Any, field_path: str) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise PipelineInputError(field_path, "data options must be an object")
    flat = {k: v for k, v in options.items() if k != "transforms" and v is not None}
    transforms = options.get("transforms") or {}
    for name, value in transforms.items():
        if value is not None and name not in SUPPORTED_TRANSFORMS:
            raise UnsupportedFeature(f"{field_path}.transforms.{name}", name, SUPPORTED_TRANSFORMS)
        if value is not None:
            flat[name] = value
    for name in flat:
        if name not in SUPPORTED_LOADER_OPTIONS:
            raise UnsupportedFeature(f"{field_path}.{name}", name, SUPPORTED_LOADER_OPTIONS)
    parsed: dict[str, Any] = {"sort": bool(flat.get("sort", False))}
    for name in ("first_step", "last_step"):
        step = flat.get(name)
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise UnsupportedFeature(f"{field_path}.{name}", step, ["a step index (integer)"])
        parsed[name] = step
    return parsed


def _parse_time_range(window: Any, field_path: str) -> tuple[float, float] | None:
    if window is None:
        return None
    try:
        start, end = float(window.get("start", 0.0)), float(window["end"])
    except (AttributeError, KeyError, TypeError, ValueError):
        raise PipelineInputError(field_path, "time_range needs numeric 'start' and 'end'") from None
    if end < start:
        raise PipelineInputError(field_path, f"time_range end {end} precedes start {start}")
    return start, end


def load_series(spec: DataSpec, load_measurement: MeasurementLoader) -> Series:
    """Read the data, cut it (steps, time window) and check it; errors name the field, column and row."""
    if spec.measurement_id is not None:
        try:
            frame = load_measurement(spec.measurement_id)
        except KeyError:
            raise PipelineInputError(spec.field, f"measurement '{spec.measurement_id}' was not found") from None
        if not isinstance(frame, pl.DataFrame):
            frame = pl.DataFrame(frame)
        _check_columns({c: [] for c in frame.columns}, spec.field)
    else:
        try:
            frame = pl.DataFrame(
                {name: spec.columns[name] for name in spec.columns if isinstance(spec.columns[name], list)}
            )
        except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            raise PipelineInputError(spec.field, f"cannot read the columns: {exc}") from None
    frame = _select_steps(frame, spec)
    try:
        data = {c: frame[c].cast(pl.Float64).to_numpy().copy() for c in REQUIRED_COLUMNS}
    except pl.exceptions.PolarsError as exc:
        raise PipelineInputError(spec.field, f"columns must be numeric: {exc}") from None
    for name, values in data.items():
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise PipelineInputError(spec.field, f"column {name!r} has a missing or non-finite value at row {bad[0]}")
    temperature = _temperature(frame, spec.field)
    time, current, voltage = data[TIME], data[CURRENT], data[VOLTAGE]
    if spec.time_range is not None:
        keep = (time - time[0] >= spec.time_range[0]) & (time - time[0] <= spec.time_range[1])
        time, current, voltage = time[keep], current[keep], voltage[keep]
        temperature = None if temperature is None else temperature[keep]
    if spec.sort:
        order = np.argsort(time, kind="stable")
        time, current, voltage = time[order], current[order], voltage[order]
        temperature = None if temperature is None else temperature[order]
    backwards = np.flatnonzero(np.diff(time) < 0)
    if backwards.size:
        raise PipelineInputError(spec.field, f"'Time [s]' decreases at row {backwards[0] + 1}")
    time = _separate_repeated_times(time, spec.field)
    if time.size < 3:
        raise PipelineInputError(spec.field, f"needs at least 3 distinct time points, got {time.size}")
    return Series(time - time[0], current, voltage, spec.source, temperature)


def _temperature(frame: pl.DataFrame, field_path: str) -> np.ndarray | None:
    """The ``Temperature [degC]`` column as floats, or ``None`` when the data has none."""
    if TEMPERATURE not in frame.columns:
        return None
    try:
        values = frame[TEMPERATURE].cast(pl.Float64).to_numpy().copy()
    except pl.exceptions.PolarsError as exc:
        raise PipelineInputError(field_path, f"column {TEMPERATURE!r} must be numeric: {exc}") from None
    bad = np.flatnonzero(~np.isfinite(values) | (values < -273.15))
    if bad.size:
        raise PipelineInputError(field_path, f"column {TEMPERATURE!r} has an invalid value at row {bad[0]}")
    return values


def _separate_repeated_times(time: np.ndarray, field_path: str) -> np.ndarray:
    """Rows sharing a time stamp (a step change) are kept, each ``TIME_NUDGE_S`` after the previous one.

    The current then changes over a millisecond, as it did on the cycler, instead of over a sampling period.
    """
    repeats = np.flatnonzero(np.diff(time) <= 0) + 1
    if repeats.size == 0:
        return time
    time = time.copy()
    for row in repeats:
        time[row] = time[row - 1] + TIME_NUDGE_S
    if np.any(np.diff(time) <= 0):
        raise PipelineInputError(field_path, "more repeated time stamps than can be separated")
    return time


def _select_steps(frame: pl.DataFrame, spec: DataSpec) -> pl.DataFrame:
    if spec.first_step is None and spec.last_step is None:
        return frame
    if STEP not in frame.columns:
        raise PipelineInputError(spec.field, "first_step/last_step need a 'Step count' column")
    steps = frame[STEP]
    keep = pl.Series([True] * frame.height)
    if spec.first_step is not None:
        keep = keep & (steps >= spec.first_step)
    if spec.last_step is not None:
        keep = keep & (steps <= spec.last_step)
    selected = frame.filter(keep)
    if selected.height == 0:
        raise PipelineInputError(spec.field, f"no rows between steps {spec.first_step} and {spec.last_step}")
    return selected
