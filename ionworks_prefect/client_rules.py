"""The official client's always-on rules for cycler data, with its sign-convention vote in linear time.

``ionworks.validators.validate_measurement_data(frame)`` (non-strict, cycler data) runs five public checks plus
``validate_positive_current_is_discharge``, which fits an OCV-R model to every non-rest step and takes a
charge-weighted vote. In ionworks-api 0.38 that function selects each step with ``step_groups == step_id`` over
the whole series (rows x steps), and fits each step with ``lsq_linear(method="bvls")`` (about 3 ms a step).
:func:`client_rule_issues` runs three of the five checks (the sanity checks decide the other two, more
strictly), and the same vote over the same steps, with every step's fit solved at once
(:mod:`ionworks_prefect.step_fits`); steps that solution cannot vouch for are fitted with the client's own
per-step test (``positive_current_is_charge``). Same steps, tolerances, weights and 25 %
threshold; the confidences differ from bvls's only within its stopping tolerance, and a share within
:data:`RECOUNT_MARGIN` of the threshold is recounted with the client's per-step test on every step. So when the
vote passes, the client's function would have passed too; when it does not, the client's own function is run
to produce its exact issue.

The columns are read from the table in batches, and the vote fits windows of whole steps (about
:data:`WINDOW_ROWS` rows), so a parquet scan of a long test is never loaded at once; a step's rows, sums and
fit are the same in a window as in the whole series.

Example:
    >>> client_rule_issues(frame)
    []
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import polars as pl
from ionworks import validators
from scipy.integrate import trapezoid

from .step_fits import step_votes

TIME, CURRENT, VOLTAGE, STEP, FREQUENCY = "Time [s]", "Current [A]", "Voltage [V]", "Step count", "Frequency [Hz]"
#: Columns the client's per-step cumulative check reads (ionworks-api 0.38 ``validators``).
CUMULATIVE_COLUMNS = ("Discharge capacity [A.h]", "Charge capacity [A.h]", "Discharge energy [W.h]",
                      "Charge energy [W.h]")
#: The client's threshold: the vote fails when this share of the weighted evidence says positive is charge.
CHARGE_SHARE = 0.25
#: Shares this close to the threshold are recounted with the client's per-step test on every step. The
#: client's bvls stops within a tolerance of the optimum that :func:`step_votes` solves exactly; the two
#: confidence values of a step differ by at most a few 1e-4, so the vote's share by less than this.
RECOUNT_MARGIN = 0.01
#: Currents (A) from which the client's rest tolerance is its full 1e-3 A: 0.02 x 0.051 A rounds above 1e-3.
FULL_REST_FROM = 0.051
#: Rows read at a time, and rows of current and voltage the vote holds at a time (more when one step is longer).
WINDOW_ROWS = 32_768

Steps = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _contiguous(table: pl.LazyFrame, names: list[str]) -> pl.DataFrame:
    """The columns loaded one at a time, each into one buffer, so numpy reads them in place (a column of
    several chunks is copied whole by every ``to_numpy``, as the client's rules call it)."""
    return pl.DataFrame([table.select(name).collect().to_series().rechunk() for name in names])


def _timed_batches(table: pl.LazyFrame, names: list[str], rows: int = WINDOW_ROWS) -> Iterator[list[np.ndarray]]:
    """Time and the named columns as float arrays, only the rows that have a time, in order, read about ``rows``
    rows at a time."""
    query = table.select(pl.col(name).cast(pl.Float64) for name in (TIME, *names))
    for batch in query.collect_batches(chunk_size=rows):
        arrays = [column.to_numpy() for column in batch.get_columns()]
        timed = ~np.isnan(arrays[0])
        yield arrays if timed.all() else [array[timed] for array in arrays]


def _changes(values: np.ndarray, previous: Optional[float]) -> np.ndarray:
    """Indices where ``values`` differs from the value before it (``previous`` before the first; none: a change)."""
    head = [True] if previous is None else [values[0] != previous]
    return np.flatnonzero(np.concatenate([head, values[1:] != values[:-1]]))


def _rest_tolerance(table: pl.LazyFrame, timed: int, rows: int) -> float:
    """The client's rest tolerance, ``min(1e-3, max(0.02 * percentile(|current|, 95), 1e-12))``, over the rows
    with a time, read whole."""
    magnitude, filled = np.empty(timed), 0
    for _, current in _timed_batches(table, [CURRENT], rows):
        np.abs(current, out=magnitude[filled:filled + len(current)])
        filled += len(current)
    # In place: magnitude is this function's own array.
    return min(1e-3, max(0.02 * float(np.percentile(magnitude, 95.0, overwrite_input=True)), 1e-12))


def _scan_current(table: pl.LazyFrame, has_steps: bool, rows: int) -> tuple[int, float, float, list[np.ndarray]]:
    """Of the rows with a time: how many, the client's rest tolerance, the largest |current|, and (with a step
    column) where their steps change."""
    timed, below, max_abs, cuts, previous = 0, 0, 0.0, [], None  # below: currents under FULL_REST_FROM
    for _, current, *step in _timed_batches(table, [CURRENT, STEP] if has_steps else [CURRENT], rows):
        if len(current) == 0:
            continue
        magnitude = np.abs(current)
        below += int(np.count_nonzero(magnitude < FULL_REST_FROM))
        max_abs = float(np.maximum(max_abs, magnitude.max()))
        if step:
            cuts.append(timed + _changes(step[0], previous))
            previous = step[0][-1]
        timed += len(current)
    if timed == 0:
        return 0, 1e-3, 0.0, []
    # The 95th percentile's lower neighbour (numpy's linear method) is at least FULL_REST_FROM when at most
    # that many currents are under it: then 0.02 of the percentile is at least 1e-3, and the minimum is 1e-3.
    full = below <= int(np.floor((timed - 1) * 0.95))
    return timed, 1e-3 if full else _rest_tolerance(table, timed, rows), max_abs, cuts


def vote_windows(table: pl.DataFrame | pl.LazyFrame, rows: int = WINDOW_ROWS) -> Iterator[Steps]:
    """Time, current, voltage and the [start, end) rows of each step the client's vote fits, window by window.

    Mirrors ``validate_positive_current_is_discharge(frame, step_col="Step count")`` up to its loop (defaults
    ``rest_tol=1e-3``, ``relative_rest_tol_frac=0.02``, ``relative_rest_tol_percentile=95``), each step taken
    as a slice of its contiguous rows; steps of fewer than two rows are dropped, as its loop skips them. Rows
    without a time are left out, as there. The columns are read in batches; the absolute current is read whole
    only when its 95th percentile may be under :data:`FULL_REST_FROM` (the rest tolerance then depends on it).
    Each window holds whole steps of about ``rows`` rows, its arrays counted from the window's first row.

    Args:
        table: The series, with time, current and voltage columns (and a step column, else steps follow the
            current's sign).
        rows: Rows a window holds, unless one step is longer.
    """
    table = table.lazy()
    has_steps = STEP in table.collect_schema()
    timed, rest_tol, max_abs, cuts = _scan_current(table, has_steps, rows)
    if timed == 0:
        return
    if not has_steps:
        if max_abs == 0:
            return
        done, previous = 0, None
        for _, current in _timed_batches(table, [CURRENT], rows):
            if len(current):
                normalized = current / max_abs
                signs = np.sign(normalized * (np.abs(normalized) > rest_tol))
                cuts.append(done + _changes(signs, previous))
                previous, done = signs[-1], done + len(current)
    starts = np.concatenate(cuts)
    ends = np.append(starts[1:], timed)
    held: list[list[np.ndarray]] = []
    first, done, read = 0, 0, 0  # the held rows' first row; steps dealt with; rows read
    for arrays in _timed_batches(table, [CURRENT, VOLTAGE], rows):
        held.append(arrays)
        read += len(arrays[0])
        whole = int(np.searchsorted(ends, read, side="right"))  # steps ending by the rows read
        if whole == done or (read < timed and read - first < rows):
            continue
        time, current, voltage = (np.concatenate([h[k] for h in held]) for k in range(3))
        s, e = starts[done:whole] - first, ends[done:whole] - first
        mean_current = np.add.reduceat(current[:e[-1]], s) / (e - s)
        fitted = (np.abs(mean_current) >= rest_tol) & (e - s >= 2)
        if fitted.any():
            yield time, current, voltage, s[fitted], e[fitted]
        held = [[array[e[-1]:] for array in (time, current, voltage)]]
        first, done = first + int(e[-1]), whole


def _weights(time: np.ndarray, current: np.ndarray, voltage: np.ndarray, starts: np.ndarray, ends: np.ndarray,
             exact: bool) -> tuple[float, float]:
    """(charge weight, discharge weight) of the client's vote over the given steps: each step's fit solved at
    once, or, with ``exact``, each step with the client's own per-step test as its loop does (steps that moved
    no charge are skipped there, and weigh nothing here)."""
    if exact:
        charge_passed = np.array([float(trapezoid(np.abs(current[s:e]), time[s:e])) for s, e in zip(starts, ends)])
        moved = charge_passed > 0
        starts, ends, charge_passed = starts[moved], ends[moved], charge_passed[moved]
        votes = [validators.positive_current_is_charge(time[s:e], current[s:e], voltage[s:e])
                 for s, e in zip(starts, ends)]
        is_charge = np.array([vote[0] for vote in votes], dtype=bool)
        p_value = np.array([vote[1] for vote in votes], dtype=float)
    else:
        is_charge, p_value, charge_passed = step_votes(time, current, voltage, starts, ends)
    weight = np.where(charge_passed > 0, (1.0 - p_value) * charge_passed, 0.0)
    return float(weight[is_charge].sum()), float(weight[~is_charge].sum())


def _sign_vote_passes(table: pl.DataFrame | pl.LazyFrame) -> bool:
    """True when ``validate_positive_current_is_discharge(frame, step_col="Step count")`` returns no issue."""
    for exact in (False, True):
        charge_weight = discharge_weight = 0.0
        for window in vote_windows(table):
            charge, discharge = _weights(*window, exact=exact)
            charge_weight, discharge_weight = charge_weight + charge, discharge_weight + discharge
        total = charge_weight + discharge_weight
        if total <= 0:
            return True
        share = charge_weight / total
        if abs(share - CHARGE_SHARE) > RECOUNT_MARGIN:
            return share < CHARGE_SHARE
    return share < CHARGE_SHARE


def _steps_sequential(table: pl.LazyFrame) -> bool:
    """True when the step column starts at 0 and moves by 0 or 1 from row to row, as the client's
    ``validate_step_count_sequential`` requires (the same numpy differences, batch by batch)."""
    previous = None
    for batch in table.select(STEP).collect_batches(chunk_size=WINDOW_ROWS):
        values = batch.get_column(STEP).to_numpy()
        if len(values) == 0:
            continue
        if previous is None and values[0] != 0:
            return False
        moves = np.diff(values if previous is None else np.concatenate([[previous], values]))
        if not np.all((moves == 0) | (moves == 1)):
            return False
        previous = values[-1]
    return True


def client_rule_issues(table: pl.DataFrame | pl.LazyFrame) -> list[validators.ValidationIssue]:
    """The issues ``validate_measurement_data(frame)`` reports for cycler data (non-strict), in the same order,
    for a series that passed :func:`~ionworks_prefect.measurement_checks.sanity_issues`.

    Two of the client's checks are not run again, as the sanity checks decide them first, more strictly:
    ``validate_time_monotonic`` reports a decrease of more than 1e-12 s between consecutive timed rows, and
    ``validate_time_missing_only_on_eis_rows`` a row with neither time nor frequency; the sanity checks fail a
    series on any decrease between those same rows, and on any row without a time that has no frequency (a NaN
    time or frequency fails them as not finite). The step and start checks read the columns batch by batch, and
    the client's own check runs only to word an issue they found. Only the cumulative check loads its columns
    whole, when there are any.

    Example:
        >>> [issue.code for issue in client_rule_issues(frame.with_columns(-pl.col("Current [A]")))]
        [<IssueCode.CURRENT_SIGN_REVERSED: 'current_sign_reversed'>]
    """
    table = table.lazy()
    schema = table.collect_schema()
    issues = []
    if all(name in schema for name in (TIME, CURRENT, VOLTAGE)) and not _sign_vote_passes(table):
        issues = validators.validate_positive_current_is_discharge(table.collect(), step_col=STEP)
    if TIME in schema:
        time = pl.col(TIME).cast(pl.Float64)
        first = table.select(time.filter(time.is_not_null() & time.is_not_nan()).first()).collect(
            engine="streaming").item()
        # The check reads the first time only.
        issues += [] if first is None else validators.validate_time_starts_at_zero(pl.DataFrame({TIME: [first]}))
    if STEP not in schema:
        # The check names every column of the series: its header is enough.
        issues += validators.validate_step_count_sequential(table.head(0).collect())
    elif not _steps_sequential(table):
        issues += validators.validate_step_count_sequential(_contiguous(table, [STEP]))
    cumulative = [name for name in CUMULATIVE_COLUMNS if name in schema]
    if STEP in schema and cumulative:
        issues += validators.validate_cumulative_values_reset_per_step(_contiguous(table, [STEP, *cumulative]), STEP)
    return issues
