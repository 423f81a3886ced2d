"""The official client's always-on rules for cycler data, with its sign-convention vote in linear time.

``ionworks.validators.validate_measurement_data(frame)`` (non-strict, cycler data) runs five public checks plus
``validate_positive_current_is_discharge``, which fits an OCV-R model to every non-rest step and takes a
charge-weighted vote. In ionworks-api 0.38 that function selects each step with ``step_groups == step_id`` over
the whole series (rows x steps), and fits each step with ``lsq_linear(method="bvls")`` (about 3 ms a step).
:func:`client_rule_issues` runs four of the five checks (the sanity checks decide the fifth, time running
backwards, more strictly), and the same vote over the same steps, with every step's fit solved at once
(:mod:`ionworks_prefect.step_fits`); steps that solution cannot vouch for are fitted with the client's own
per-step test (``positive_current_is_charge``). Same steps, tolerances, weights and 25 %
threshold; the confidences differ from bvls's only within its stopping tolerance, and a share within
:data:`RECOUNT_MARGIN` of the threshold is recounted with the client's per-step test on every step. So when the
vote passes, the client's function would have passed too; when it does not, the client's own function is run
to produce its exact issue.

The vote reads current and voltage in windows of whole steps (about :data:`WINDOW_ROWS` rows) streamed from the
table, so only the columns the other checks read are held whole: a parquet scan of a long test is never loaded
at once. A step's rows, sums and fit are the same in a window as in the whole series.

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
#: Columns the other checks read (ionworks-api 0.38 ``validators``); the vote streams current and voltage.
CHECKED_COLUMNS = (TIME, STEP, FREQUENCY,
                   "Discharge capacity [A.h]", "Charge capacity [A.h]", "Discharge energy [W.h]", "Charge energy [W.h]")
#: The client's threshold: the vote fails when this share of the weighted evidence says positive is charge.
CHARGE_SHARE = 0.25
#: Shares this close to the threshold are recounted with the client's per-step test on every step. The
#: client's bvls stops within a tolerance of the optimum that :func:`step_votes` solves exactly; the two
#: confidence values of a step differ by at most a few 1e-4, so the vote's share by less than this.
RECOUNT_MARGIN = 0.01
#: Rows of current and voltage the vote holds at a time (more when one step is longer).
WINDOW_ROWS = 65_536

Steps = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _contiguous(table: pl.LazyFrame, names: list[str]) -> pl.DataFrame:
    """The columns loaded one at a time, each into one buffer, so numpy reads them in place (a column of
    several chunks is copied whole by every ``to_numpy``, as the client's rules call it)."""
    return pl.DataFrame([table.select(name).collect().to_series().rechunk() for name in names])


def _batches(table: pl.LazyFrame, names: list[str], timed: Optional[np.ndarray],
             rows: int = WINDOW_ROWS) -> Iterator[list[np.ndarray]]:
    """The columns as float arrays, in order, about ``rows`` rows at a time; only rows where ``timed`` holds,
    when given."""
    offset = 0
    query = table.select(pl.col(name).cast(pl.Float64) for name in names)
    for batch in query.collect_batches(chunk_size=rows):
        arrays = [batch.get_column(name).to_numpy() for name in names]
        if timed is not None:
            keep = timed[offset:offset + len(batch)]
            arrays = [array[keep] for array in arrays]
        offset += len(batch)
        yield arrays


def vote_windows(table: pl.DataFrame | pl.LazyFrame, time: np.ndarray, step_values: Optional[np.ndarray],
                 rows: int = WINDOW_ROWS) -> Iterator[Steps]:
    """Time, current, voltage and the [start, end) rows of each step the client's vote fits, window by window.

    Mirrors ``validate_positive_current_is_discharge(frame, step_col="Step count")`` up to its loop (defaults
    ``rest_tol=1e-3``, ``relative_rest_tol_frac=0.02``, ``relative_rest_tol_percentile=95``), each step taken
    as a slice of its contiguous rows; steps of fewer than two rows are dropped, as its loop skips them. Rows
    without a time are left out, as there. Each window holds whole steps of about ``rows`` rows, its arrays
    counted from the window's first row.

    Args:
        table: The series; its current and voltage are read from it in order.
        time: Its time column as floats.
        step_values: Its step column, or None when it has none (steps then follow the current's sign).
        rows: Rows a window holds, unless one step is longer.
    """
    table = table.lazy()
    timed = ~np.isnan(time)
    if timed.all():
        timed = None
    else:
        time = time[timed]
        step_values = None if step_values is None else step_values[timed]
    if len(time) == 0:
        return
    abs_current, filled = np.empty(len(time)), 0
    for (current,) in _batches(table, [CURRENT], timed):
        np.abs(current, out=abs_current[filled:filled + len(current)])
        filled += len(current)
    max_abs = float(abs_current.max())
    # In place: abs_current is this function's own array, and only its maximum was needed besides.
    relative_rest_tol = max(0.02 * float(np.percentile(abs_current, 95.0, overwrite_input=True)), 1e-12)
    rest_tol = min(1e-3, relative_rest_tol)
    del abs_current
    if step_values is None:
        if max_abs == 0:
            return
        step_values = np.concatenate([np.sign(normalized * (np.abs(normalized) > rest_tol)).astype(np.int8)
                                      for normalized in (c / max_abs for (c,) in _batches(table, [CURRENT], timed))])
    starts = np.flatnonzero(np.concatenate([[True], step_values[1:] != step_values[:-1]]))
    ends = np.append(starts[1:], len(time))
    held: list[list[np.ndarray]] = []
    first, done, read = 0, 0, 0  # the held rows' first row; steps dealt with; rows read
    for arrays in _batches(table, [CURRENT, VOLTAGE], timed, rows):
        held.append(arrays)
        read += len(arrays[0])
        whole = int(np.searchsorted(ends, read, side="right"))  # steps ending by the rows read
        if whole == done or (read < len(time) and read - first < rows):
            continue
        current, voltage = (np.concatenate([h[k] for h in held]) for k in (0, 1))
        s, e = starts[done:whole] - first, ends[done:whole] - first
        mean_current = np.add.reduceat(current[:e[-1]], s) / (e - s)
        fitted = (np.abs(mean_current) >= rest_tol) & (e - s >= 2)
        if fitted.any():
            yield time[first:first + len(current)], current, voltage, s[fitted], e[fitted]
        held = [[current[e[-1]:], voltage[e[-1]:]]]
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


def _sign_vote_passes(table: pl.DataFrame | pl.LazyFrame, time: np.ndarray, step_values: Optional[np.ndarray]) -> bool:
    """True when ``validate_positive_current_is_discharge(frame, step_col="Step count")`` returns no issue."""
    for exact in (False, True):
        charge_weight = discharge_weight = 0.0
        for window in vote_windows(table, time, step_values):
            charge, discharge = _weights(*window, exact=exact)
            charge_weight, discharge_weight = charge_weight + charge, discharge_weight + discharge
        total = charge_weight + discharge_weight
        if total <= 0:
            return True
        share = charge_weight / total
        if abs(share - CHARGE_SHARE) > RECOUNT_MARGIN:
            return share < CHARGE_SHARE
    return share < CHARGE_SHARE


def client_rule_issues(table: pl.DataFrame | pl.LazyFrame) -> list[validators.ValidationIssue]:
    """The issues ``validate_measurement_data(frame)`` reports for cycler data (non-strict), in the same order,
    for a series that passed :func:`~ionworks_prefect.measurement_checks.sanity_issues`.

    The client's ``validate_time_monotonic`` is not run again: it reports a decrease of more than 1e-12 s between
    consecutive timed rows, and the sanity checks have already failed a series on any decrease between those
    same rows (untimed rows are stepped over by both; a NaN time fails them as not finite). Only the columns
    the other checks read are loaded whole (:data:`CHECKED_COLUMNS`); the vote streams the rest.

    Example:
        >>> [issue.code for issue in client_rule_issues(frame.with_columns(-pl.col("Current [A]")))]
        [<IssueCode.CURRENT_SIGN_REVERSED: 'current_sign_reversed'>]
    """
    table = table.lazy()
    schema = table.collect_schema()
    frame = _contiguous(table, [name for name in CHECKED_COLUMNS if name in schema])
    issues = []
    if all(name in schema for name in (TIME, CURRENT, VOLTAGE)):
        time = frame.get_column(TIME).cast(pl.Float64).to_numpy()
        steps = frame.get_column(STEP).to_numpy() if STEP in schema else None
        if not _sign_vote_passes(table, time, steps):
            issues = validators.validate_positive_current_is_discharge(table.collect(), step_col=STEP)
    issues += validators.validate_time_missing_only_on_eis_rows(frame)
    issues += validators.validate_time_starts_at_zero(frame)
    # Without a step column the check names every column of the series: its header is enough.
    issues += validators.validate_step_count_sequential(frame if STEP in schema else table.head(0).collect())
    if STEP in schema:
        issues += validators.validate_cumulative_values_reset_per_step(frame, STEP)
    return issues
