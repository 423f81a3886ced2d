"""The official client's always-on rules for cycler data, with its sign-convention vote in linear time.

``ionworks.validators.validate_measurement_data(frame)`` (non-strict, cycler data) runs five public checks plus
``validate_positive_current_is_discharge``, which fits an OCV-R model to every non-rest step and takes a
charge-weighted vote. In ionworks-api 0.38 that function selects each step with ``step_groups == step_id`` over
the whole series, so its cost grows with rows x steps: 1,000,000 rows of 2,000-row steps take about 0.4 s,
5,000,000 rows about 10 s. :func:`client_rule_issues` runs the same five checks, and the same vote over the
same steps with the client's own per-step test (``positive_current_is_charge``) on contiguous slices, in one
pass. When the vote passes, the client's function would have passed too (same steps, same tolerances, same
weights, same 25 % threshold); when it does not, the client's own function is run to produce its exact issue.

Example:
    >>> client_rule_issues(frame)
    []
"""

from __future__ import annotations

import numpy as np
import polars as pl
from ionworks import validators
from scipy.integrate import trapezoid

STEP = "Step count"


def _sign_vote_passes(frame: pl.DataFrame, current_col: str = "Current [A]", voltage_col: str = "Voltage [V]",
                      time_col: str = "Time [s]") -> bool:
    """True when ``validate_positive_current_is_discharge(frame, step_col="Step count")`` returns no issue.

    Mirrors that function line for line (defaults ``rest_tol=1e-3``, ``relative_rest_tol_frac=0.02``,
    ``relative_rest_tol_percentile=95``), with each step taken as a slice of its contiguous rows.
    """
    if any(c not in frame.columns for c in (current_col, voltage_col, time_col)):
        return True
    current, voltage, time = (frame.get_column(c).to_numpy() for c in (current_col, voltage_col, time_col))
    step_values = frame.get_column(STEP).to_numpy() if STEP in frame.columns else None
    timed = ~np.isnan(time)
    if not timed.all():
        current, voltage, time = current[timed], voltage[timed], time[timed]
        if step_values is not None:
            step_values = step_values[timed]
    if len(current) == 0:
        return True
    abs_current = np.abs(current)
    relative_rest_tol = max(0.02 * float(np.percentile(abs_current, 95.0)), 1e-12)
    rest_tol = min(1e-3, relative_rest_tol)
    if step_values is None:
        max_abs = np.max(abs_current)
        if max_abs == 0:
            return True
        normalized = current / max_abs
        step_values = np.sign(normalized * (np.abs(normalized) > rest_tol))
    starts = np.flatnonzero(np.concatenate([[True], np.diff(step_values) != 0]))
    ends = np.append(starts[1:], len(current))
    sums = np.add.reduceat(current, starts)
    mean_current = sums / (ends - starts)
    charge_weight = discharge_weight = 0.0
    for start, end in zip(starts[np.abs(mean_current) >= rest_tol], ends[np.abs(mean_current) >= rest_tol]):
        if end - start < 2:
            continue
        t_step, i_step = time[start:end], current[start:end]
        charge_passed = float(trapezoid(np.abs(i_step), t_step))
        if charge_passed <= 0:
            continue
        is_charge, p_value = validators.positive_current_is_charge(t_step, i_step, voltage[start:end])
        weight = (1.0 - p_value) * charge_passed
        if is_charge:
            charge_weight += weight
        else:
            discharge_weight += weight
    total = charge_weight + discharge_weight
    return total <= 0 or charge_weight / total < 0.25


def client_rule_issues(frame: pl.DataFrame) -> list[validators.ValidationIssue]:
    """The issues ``validate_measurement_data(frame)`` reports for cycler data (non-strict), in the same order.

    Example:
        >>> [issue.code for issue in client_rule_issues(frame.with_columns(-pl.col("Current [A]")))]
        [<IssueCode.CURRENT_SIGN_REVERSED: 'current_sign_reversed'>]
    """
    issues = [] if _sign_vote_passes(frame) else validators.validate_positive_current_is_discharge(frame, step_col=STEP)
    issues += validators.validate_time_missing_only_on_eis_rows(frame)
    issues += validators.validate_time_starts_at_zero(frame)
    issues += validators.validate_time_monotonic(frame)
    issues += validators.validate_step_count_sequential(frame)
    if STEP in frame.columns:
        issues += validators.validate_cumulative_values_reset_per_step(frame, STEP)
    return issues
