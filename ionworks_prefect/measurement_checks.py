"""Checks on a time series before anything is sent: physical sanity, then the official client's rules, once.

The sanity checks catch what the client's rules do not (or meet only as a numpy error): values that are not
finite, text in numeric columns, numbers written with decimal commas, duplicated columns, voltages outside the
cell's window (0-6 V when unknown), currents beyond 50 C (1,000 A when the capacity is unknown), time running
backwards or not in seconds. They run as one vectorised polars pass. Each failure is a
:class:`MeasurementSanityError` naming the check, the file, the column and the first bad row.

Example:
    >>> check_measurement(frame, file="rpt.csv", voltage_window=(2.5, 4.2), rated_capacity=5.0)
"""

from __future__ import annotations

import re
from typing import Any, Optional

import polars as pl
from ionworks.validators import MeasurementValidationError, validate_measurement_data

from .client_rules import CURRENT, FREQUENCY, STEP, TIME, VOLTAGE, client_rule_issues
from .exceptions import InvalidMeasurementError

#: Plausible cell voltage when the cell's window is not given, in volts.
DEFAULT_VOLTAGE_RANGE = (0.0, 6.0)
#: Slack around a given voltage window (a CV hold reads a few mV over its limit), in volts.
VOLTAGE_WINDOW_SLACK = 0.05
#: Largest plausible current: this many C with a rated capacity, else MAX_CURRENT_A.
MAX_C_RATE = 50.0
MAX_CURRENT_A = 1000.0
#: Time columns sampled faster than this (median step) are taken for hours or days, not seconds.
MIN_MEDIAN_STEP_S = 1e-3
#: Time spans longer than this are taken for milliseconds or wall-clock timestamps, not seconds.
MAX_SPAN_S = 5 * 365.25 * 86400.0
#: Columns that must hold numbers when present.
NUMERIC_COLUMNS = (
    TIME, CURRENT, VOLTAGE, STEP, "Cycle count", "Temperature [degC]", FREQUENCY,
    "Discharge capacity [A.h]", "Charge capacity [A.h]", "Discharge energy [W.h]", "Charge energy [W.h]", "Power [W]",
)
_DUPLICATE = re.compile(r"^(?P<base>.+?)(?:_duplicated_\d+|\.\d+)$")
_DECIMAL_COMMA = r"^\s*[+-]?\d+,\d+(?:[eE][+-]?\d+)?\s*$"

_COLUMN_BY_CODE_PREFIX = {
    "current_sign": CURRENT,
    "time_": TIME,
    "step_count": STEP,
    "ocp_voltage": VOLTAGE,
}


class MeasurementSanityError(InvalidMeasurementError):
    """A time series failed a sanity check; ``check`` names it (e.g. ``"finite"``, ``"voltage_range"``)."""

    def __init__(self, message: str, *, check: str, file: str | None = None, column: str | None = None,
                 row: int | None = None, issues: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, file=file, column=column, row=row, issues=issues)
        self.check = check


def _first(mask: pl.Expr) -> pl.Expr:
    return pl.arg_where(mask).first()


def _value(table: pl.LazyFrame, name: str, row: int) -> Any:
    return table.select(pl.col(name).slice(row, 1)).collect().item()


def _duplicated(columns: list[str]) -> Optional[dict[str, Any]]:
    names = set(columns)
    for name in columns:
        match = _DUPLICATE.match(name)
        if match and match["base"] in names:
            return {"check": "duplicate_column", "column": match["base"], "row": None,
                    "message": f"Column {match['base']!r} appears twice (the copy was read as {name!r}); "
                               "remove one of them"}
    return None


def _text_in_numbers(table: pl.LazyFrame, schema: pl.Schema) -> Optional[dict[str, Any]]:
    for name in NUMERIC_COLUMNS:
        if name not in schema or schema[name].is_numeric():
            continue
        text = table.select(pl.col(name).cast(pl.String)).collect()[name]
        if text.str.contains(_DECIMAL_COMMA).all():
            return {"check": "decimal_separator", "column": name, "row": 0,
                    "message": f"Column {name!r} holds numbers written with decimal commas (e.g. {text[0]!r}); "
                               "read the file with its decimal separator or convert the commas to points"}
        bad = text.cast(pl.Float64, strict=False).is_null() & text.is_not_null()
        row = int(bad.arg_true()[0]) if bad.any() else 0
        return {"check": "numeric", "column": name, "row": row,
                "message": f"Column {name!r} holds the text {text[row]!r} where numbers are expected"}
    return None


def _subject(key: str) -> str:
    """The column a sanity check's key is about (``finite|Voltage [V]``, ``backwards``, ``voltage`` ...)."""
    kind, _, name = key.partition("|")
    return name or {"voltage": VOLTAGE, "current": CURRENT}.get(kind, TIME)


def sanity_issues(
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    rated_capacity: Optional[float] = None,
    voltage_window: Optional[tuple[float, float]] = None,
) -> list[dict[str, Any]]:
    """Every failed sanity check as ``{"check", "column", "row", "message"}``, most basic first.

    ``frame`` may be lazy (a parquet scan): the checks are streaming passes of reductions, one a column, so a
    file is checked without loading it whole.

    Example:
        >>> sanity_issues(pl.DataFrame({"Voltage [V]": [3.7, float("nan")]}))[0]["row"]
        1
    """
    table = frame.lazy()
    schema = table.collect_schema()
    columns = list(schema)
    structural = [issue for issue in (_duplicated(columns), _text_in_numbers(table, schema)) if issue]
    if structural:
        return structural
    # Each row check is a mask whose any() is one streaming reduction; the first row is located only where
    # a mask holds somewhere (locating it everywhere would keep every mask in memory).
    masks: dict[str, pl.Expr] = {}
    totals: dict[str, pl.Expr] = {}
    for name in columns:
        if schema[name].is_float():
            masks[f"finite|{name}"] = pl.col(name).is_not_null() & ~pl.col(name).is_finite()
    untimed_ok = pl.col(FREQUENCY).is_not_null() if FREQUENCY in columns else pl.lit(False)
    for name in (CURRENT, VOLTAGE, STEP):
        if name in columns:
            masks[f"missing|{name}"] = pl.col(name).is_null()
    if TIME in columns:
        time = pl.col(TIME).cast(pl.Float64)
        masks[f"missing|{TIME}"] = time.is_null() & ~untimed_ok
        masks["backwards"] = time.forward_fill().diff() < 0
        # The median of the positive steps is below the limit only if at least half of them are: counted in
        # the streaming pass, and only then is the median itself (which needs every step in memory) taken.
        step = time.drop_nulls().diff()
        totals["steps"] = (step > 0).sum()
        totals["short_steps"] = ((step > 0) & (step < MIN_MEDIAN_STEP_S)).sum()
        totals["span"] = time.max() - time.min()
    if VOLTAGE in columns:
        low, high = DEFAULT_VOLTAGE_RANGE if voltage_window is None else (
            voltage_window[0] - VOLTAGE_WINDOW_SLACK, voltage_window[1] + VOLTAGE_WINDOW_SLACK)
        masks["voltage"] = (pl.col(VOLTAGE) < low) | (pl.col(VOLTAGE) > high)
    limit = MAX_CURRENT_A if rated_capacity is None else MAX_C_RATE * rated_capacity
    if CURRENT in columns:
        masks["current"] = pl.col(CURRENT).abs() > limit
    # One streaming pass a column: a pass over every column at once queues decoded batches of all of them
    # (5M rows: +236 MiB, against +45 MiB a column at a time).
    passes: dict[str, dict[str, pl.Expr]] = {}
    for key, expr in [*((key, mask.any()) for key, mask in masks.items()), *totals.items()]:
        passes.setdefault(_subject(key), {})[key] = expr
    found = {key: value for exprs in passes.values()
             for key, value in table.select(**exprs).collect(engine="streaming").row(0, named=True).items()}
    held = {key: _first(mask) for key, mask in masks.items() if found[key]}
    found |= {key: None for key in masks} | (table.select(**held).collect().row(0, named=True) if held else {})

    issues: list[dict[str, Any]] = []

    def add(check: str, column: str, row: Optional[int], message: str) -> None:
        issues.append({"check": check, "column": column, "row": row, "message": message})

    for key, row in found.items():
        kind, _, name = key.partition("|")
        if kind == "finite" and row is not None:
            add("finite", name, row, f"Column {name!r} holds {_value(table, name, row)} where a finite number "
                                     "is expected")
        elif kind == "missing" and row is not None:
            add("missing", name, row, f"Column {name!r} has no value")
    if found.get("backwards") is not None:
        row = found["backwards"]
        before = table.select(pl.col(TIME).head(row).drop_nulls().last()).collect().item()
        add("time_monotonic", TIME, row, f"Time goes backwards: {_value(table, TIME, row)} s comes after {before} s")
    median_step, span = None, found.get("span")
    if found.get("steps") and 2 * found["short_steps"] >= found["steps"]:
        step = pl.col(TIME).cast(pl.Float64).drop_nulls().diff()
        median_step = table.select(step.filter(step > 0).median()).collect().item()
    if median_step is not None and median_step < MIN_MEDIAN_STEP_S:
        add("time_units", TIME, None, f"Samples are {median_step:.3g} s apart (median); the time looks like hours "
                                      "or days, not seconds")
    elif span is not None and span > MAX_SPAN_S:
        add("time_units", TIME, None, f"The time spans {span:.3g} s (over five years); it looks like milliseconds "
                                      "or wall-clock timestamps, not seconds from the start")
    if found.get("voltage") is not None:
        row = found["voltage"]
        value = _value(table, VOLTAGE, row)
        window = voltage_window or DEFAULT_VOLTAGE_RANGE
        hint = (" (a decimal separator lost in reading: 0,1377 read as 1377?)" if abs(value) >= 100
                else "" if voltage_window else "; pass voltage_window= if this cell really goes there")
        add("voltage_range", VOLTAGE, row, f"Voltage {value:g} V is outside the plausible {window[0]:g}-{window[1]:g}"
                                           f" V{hint}")
    if found.get("current") is not None:
        row = found["current"]
        basis = f"{MAX_C_RATE:g} C of the rated {rated_capacity:g} A.h" if rated_capacity else f"{MAX_CURRENT_A:g} A"
        add("current_range", CURRENT, row, f"Current {_value(table, CURRENT, row):g} A is beyond {basis} "
                                           "(mA read as A?)")
    return issues


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
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    file: str | None = None,
    data_type: str | None = None,
    rated_capacity: Optional[float] = None,
    voltage_window: Optional[tuple[float, float]] = None,
    strict: bool = False,
) -> None:
    """Sanity checks, then the official client's rules (``validate_measurement_data``), each run once.

    ``frame`` may be lazy (a parquet scan): the sanity checks stream over it and only the columns the client's
    rules read are loaded.

    Raises:
        MeasurementSanityError: a sanity check failed (``.check``, ``.column``, ``.row``).
        InvalidMeasurementError: a client rule failed; names the file, column and row of the first problem and
            lists every issue in ``.issues``.

    Example:
        >>> check_measurement(frame, file="rpt.csv")
    """
    table = frame.lazy()
    if table.select(pl.len()).collect().item() == 0:
        raise InvalidMeasurementError("Measurement has no rows", file=file)
    issues = sanity_issues(table, rated_capacity=rated_capacity, voltage_window=voltage_window)
    if issues:
        first = issues[0]
        more = f" (+{len(issues) - 1} more issue(s))" if len(issues) > 1 else ""
        raise MeasurementSanityError(first["message"] + more, check=first["check"], file=file,
                                     column=first["column"], row=first["row"], issues=issues)
    try:
        if data_type is None and not strict:
            # The same rules, with the sign-convention vote in linear time (see ionworks_prefect.client_rules).
            broken = client_rule_issues(table)
            if broken:
                raise MeasurementValidationError(broken[0].message, errors=broken)
        else:
            validate_measurement_data(table.collect(), strict=strict, data_type=data_type,
                                      rated_capacity=rated_capacity, voltage_window=voltage_window)
    except MeasurementValidationError as exc:
        found = [{"code": str(i.code), "message": i.message, **i.payload} for i in exc.errors]
        first = exc.errors[0] if exc.errors else None
        message = first.message if first else str(exc.message)
        if len(found) > 1:
            message += f" (+{len(found) - 1} more issue(s))"
        raise InvalidMeasurementError(
            message,
            file=file,
            column=_column_for(str(first.code), first.payload) if first else None,
            row=_row_for(first.payload) if first else None,
            issues=found,
        ) from exc
    except (ArithmeticError, ValueError, TypeError) as exc:  # numpy/scipy giving up on data the rules cannot fit
        raise InvalidMeasurementError(
            f"The data cannot be checked against Ionworks' rules ({str(exc).splitlines()[0] or type(exc).__name__}); "
            "look for constant, empty or extreme columns", file=file) from exc
