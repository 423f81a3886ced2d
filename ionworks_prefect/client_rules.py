"""The official client's always-on rules for cycler data, with its sign-convention vote in linear time.

``ionworks.validators.validate_measurement_data(frame)`` (non-strict, cycler data) runs five public checks plus
``validate_positive_current_is_discharge``, which fits an OCV-R model to every non-rest step and takes a
charge-weighted vote. In ionworks-api 0.38 that function selects each step with ``step_groups == step_id`` over
the whole series (rows x steps), and fits each step with ``lsq_linear(method="bvls")`` (about 3 ms a step).
:func:`client_rule_issues` runs the same five checks, and the same vote over the same steps, with every step's
fit solved at once (:mod:`ionworks_prefect.step_fits`); steps that solution cannot vouch for are fitted with the
client's own per-step test (``positive_current_is_charge``). Same steps, tolerances, weights and 25 %
threshold; the confidences differ from bvls's only within its stopping tolerance, and a share within
:data:`RECOUNT_MARGIN` of the threshold is recounted with the client's per-step test on every step. So when the
vote passes, the client's function would have passed too; when it does not, the client's own function is run
to produce its exact issue.

Example:
    >>> client_rule_issues(frame)
    []
"""

from __future__ import annotations

import numpy as np
import polars as pl
from ionworks import validators
from scipy.integrate import trapezoid

from .step_fits import step_votes

STEP = "Step count"
#: The client's threshold: the vote fails when this share of the weighted evidence says positive is charge.
CHARGE_SHARE = 0.25
#: Shares this close to the threshold are recounted with the client's per-step test on every step. The
#: client's bvls stops within a tolerance of the optimum that :func:`step_votes` solves exactly; the two
#: confidence values of a step differ by at most a few 1e-4, so the vote's share by less than this.
RECOUNT_MARGIN = 0.01


def _vote_steps(frame: pl.DataFrame, current_col: str, voltage_col: str,
                time_col: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Time, current, voltage and the [start, end) rows of each step the client's vote fits; None if none.

    Mirrors ``validate_positive_current_is_discharge(frame, step_col="Step count")`` up to its loop (defaults
    ``rest_tol=1e-3``, ``relative_rest_tol_frac=0.02``, ``relative_rest_tol_percentile=95``), each step taken
    as a slice of its contiguous rows; steps of fewer than two rows are dropped, as its loop skips them.
    """
    if any(c not in frame.columns for c in (current_col, voltage_col, time_col)):
        return None
    current, voltage, time = (frame.get_column(c).cast(pl.Float64).to_numpy() for c in (current_col, voltage_col,
                                                                                        time_col))
    step_values = frame.get_column(STEP).to_numpy() if STEP in frame.columns else None
    timed = ~np.isnan(time)
    if not timed.all():
        current, voltage, time = current[timed], voltage[timed], time[timed]
        if step_values is not None:
            step_values = step_values[timed]
    if len(current) == 0:
        return None
    abs_current = np.abs(current)
    # In place: abs_current is this function's own array, and only its maximum is read after.
    relative_rest_tol = max(0.02 * float(np.percentile(abs_current, 95.0, overwrite_input=True)), 1e-12)
    rest_tol = min(1e-3, relative_rest_tol)
    if step_values is None:
        max_abs = np.max(abs_current)
        if max_abs == 0:
            return None
        normalized = current / max_abs
        step_values = np.sign(normalized * (np.abs(normalized) > rest_tol))
    starts = np.flatnonzero(np.concatenate([[True], step_values[1:] != step_values[:-1]]))
    ends = np.append(starts[1:], len(current))
    mean_current = np.add.reduceat(current, starts) / (ends - starts)
    fitted = (np.abs(mean_current) >= rest_tol) & (ends - starts >= 2)
    if not fitted.any():
        return None
    return time, current, voltage, starts[fitted], ends[fitted]


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


def _sign_vote_passes(frame: pl.DataFrame, current_col: str = "Current [A]", voltage_col: str = "Voltage [V]",
                      time_col: str = "Time [s]") -> bool:
    """True when ``validate_positive_current_is_discharge(frame, step_col="Step count")`` returns no issue."""
    steps = _vote_steps(frame, current_col, voltage_col, time_col)
    if steps is None:
        return True
    for exact in (False, True):
        charge_weight, discharge_weight = _weights(*steps, exact=exact)
        total = charge_weight + discharge_weight
        if total <= 0:
            return True
        share = charge_weight / total
        if abs(share - CHARGE_SHARE) > RECOUNT_MARGIN:
            return share < CHARGE_SHARE
    return share < CHARGE_SHARE


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
