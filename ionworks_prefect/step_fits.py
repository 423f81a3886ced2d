"""The client's per-step sign-convention test, ``positive_current_is_charge``, for every step of a series at once.

For one step and one sign hypothesis the client fits ``V = v0 + delta * soc - I * R0`` by bounded least squares
(``lsq_linear(method="bvls")``; ``delta`` in ``[0, 2 v_range]``, ``R0 >= 0``, ``v0`` within a voltage range
either side of the step's) and keeps ``delta`` and the cost. That problem is convex, so its optimum is the
reduced least-squares solution of one of its active sets, the best feasible one: with ``v0`` free it drops out
of the mean-centred problem, with ``v0`` at either bound two unknowns remain, and each of the 18 sets (``v0``
free or at a bound, ``delta`` free or at a bound, ``R0`` free or 0) is solved in closed form. Per-step sums are
taken over all steps together with ``numpy.add.reduceat``, so the cost is a few passes over the data, not
~3 ms a step. Exactly constant current (columns ``1`` and ``I`` collinear) leaves ``R0`` free of the centred
cost, which the ``v0``-at-a-bound sets then cover.

A step this solution cannot vouch for gets the client's own test: the client's special cases (at most three
rows, no time span, flat voltage, no charge range), a near-singular fit that is not exactly constant current,
a second feasible point within rounding of the best, a non-finite result, or a verdict within rounding of a
tie. bvls stops within a tolerance of the optimum found here, so the two confidence values differ slightly
(a few 1e-4 at most on steps of a handful of rows, far less on long ones); the verdicts agree.

Example:
    >>> is_charge, p_value, charge_passed = step_votes(time, current, voltage, starts, ends)
"""

from __future__ import annotations

import numpy as np
import polars as pl
from ionworks import validators

#: Rows of steps solved together.
BATCH_ROWS = 131_072
#: The client's small numbers in ``positive_current_is_charge`` / ``_fit_ecm_convention``.
_EPS, _SPAN_EPS = 1e-10, 1e-12
#: Relative closeness to a tie or a threshold that sends a step to the client's own test.
_TIE = 1e-8
#: Objectives this close (relative to the step's scale), well above their rounding, count as a tie between points.
_ROUNDING = 1e-12
#: A fit whose two unknowns are this close to collinear (1 - correlation^2) is left to the client's test.
_SINGULAR = 1e-10


class _Steps:
    """Rows of the fitted steps, packed one after the other, and per-step reductions over them."""

    def __init__(self, starts: np.ndarray, ends: np.ndarray) -> None:
        self.lengths = ends - starts
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        self.rows = np.repeat(starts - self.offsets, self.lengths) + np.arange(int(self.lengths.sum()))

    def sum(self, values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values, self.offsets)

    def mean(self, values: np.ndarray) -> np.ndarray:
        return self.sum(values) / self.lengths

    def spread(self, per_step: np.ndarray) -> np.ndarray:
        return np.repeat(per_step, self.lengths)

    def cumulative(self, values: np.ndarray) -> np.ndarray:
        """Running sums restarting at each step, each summed from its step's start as ``numpy.cumsum`` would."""
        frame = pl.DataFrame({"step": self.spread(np.arange(len(self.lengths))), "value": values})
        return frame.select(pl.col("value").cum_sum().over("step")).to_series().to_numpy()


def _candidates(h00: np.ndarray, h01: np.ndarray, h11: np.ndarray, r0: np.ndarray, r1: np.ndarray,
                delta_high: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(delta, R0)`` minimising ``x'Hx - 2x'r`` on each active set of ``0 <= delta <= delta_high``, ``R0 >= 0``:
    both free; delta free, R0 = 0; R0 free at delta = 0 or delta_high; both at bounds."""
    zero = np.zeros_like(h00)
    det = h00 * h11 - h01 * h01
    return [((h11 * r0 - h01 * r1) / det, (h00 * r1 - h01 * r0) / det), (r0 / h00, zero), (zero, r1 / h11),
            (delta_high, (r1 - delta_high * h01) / h11), (zero, zero), (delta_high, zero)]


def _fit(steps: _Steps, soc: np.ndarray, k: np.ndarray, voltage: np.ndarray, v_low: np.ndarray,
         v_high: np.ndarray, delta_high: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(delta, cost, vouched)`` of ``min |v0 + delta soc + R0 k - V|^2 / 2`` under the client's bounds.

    With ``a = (mean soc, mean k)`` and centred sums ``M``, the objective is ``Q(delta, R0) + n (mean V - v0 -
    a.x)^2``: with ``v0`` free the second term vanishes (and ``v0`` must then fall in its range); with ``v0`` at
    a bound ``c`` it is a two-unknown problem with ``H = M + n a a'``. Each of the 18 active sets is solved in
    closed form and the best feasible point kept.
    """
    n = steps.lengths.astype(float)
    soc_mean, k_mean, v_mean = steps.mean(soc), steps.mean(k), steps.mean(voltage)
    sc, kc, vc = soc - steps.spread(soc_mean), k - steps.spread(k_mean), voltage - steps.spread(v_mean)
    s_ss, s_sk, s_kk = steps.sum(sc * sc), steps.sum(sc * kc), steps.sum(kc * kc)
    s_sv, s_kv, s_vv = steps.sum(sc * vc), steps.sum(kc * vc), steps.sum(vc * vc)
    constant = np.minimum.reduceat(k, steps.offsets) == np.maximum.reduceat(k, steps.offsets)
    h00, h01, h11 = s_ss + n * soc_mean ** 2, s_sk + n * soc_mean * k_mean, s_kk + n * k_mean ** 2
    singular = (~constant & (s_ss * s_kk - s_sk ** 2 <= _SINGULAR * s_ss * s_kk)) | (
        h00 * h11 - h01 ** 2 <= _SINGULAR * h00 * h11)
    shape = s_ss.shape
    found = []  # (delta, R0, v0, objective) of every feasible candidate
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for index, (delta, r0) in enumerate(_candidates(s_ss, s_sk, s_kk, s_sv, s_kv, delta_high)):
            v0 = v_mean - delta * soc_mean - r0 * k_mean
            ok = (v0 >= v_low) & (v0 <= v_high) & (~constant if index in (0, 2, 3) else True)
            found.append((delta, r0, v0, s_vv + delta * (delta * s_ss - 2 * s_sv)
                          + r0 * (r0 * s_kk + 2 * delta * s_sk - 2 * s_kv), ok))
        for c in (v_low, v_high):
            u = v_mean - c
            for delta, r0 in _candidates(h00, h01, h11, s_sv + n * soc_mean * u, s_kv + n * k_mean * u, delta_high):
                objective = (s_vv + delta * (delta * s_ss - 2 * s_sv) + r0 * (r0 * s_kk + 2 * delta * s_sk - 2 * s_kv)
                             + n * (u - delta * soc_mean - r0 * k_mean) ** 2)
                found.append((delta, r0, c, objective, True))
        feasible = []
        for delta, r0, v0, objective, ok in found:
            delta, r0, v0 = (np.broadcast_to(x, shape) for x in (delta, r0, v0))
            ok = ok & (delta >= 0) & (delta <= delta_high) & (r0 >= 0) & np.isfinite(objective) & np.isfinite(r0)
            feasible.append((delta, r0, v0, np.where(ok, objective, np.inf)))
        best = (np.zeros(shape), np.zeros(shape), np.zeros(shape), np.full(shape, np.inf))
        for candidate in feasible:
            better = candidate[3] < best[3]
            best = tuple(np.where(better, new, old) for new, old in zip(candidate, best))
        delta, r0, v0, objective = best
        # A different point nearly as good: the problem is too flat here for rounding to pick the same optimum.
        tolerance = _ROUNDING * (s_vv + n * delta_high ** 2)
        rival = np.zeros(shape, dtype=bool)
        for other, _, _, value in feasible:
            rival |= (value - objective <= tolerance) & (np.abs(other - delta) > _TIE * delta_high)
    offset = v_mean - v0 - delta * soc_mean - r0 * k_mean
    residual = vc - steps.spread(delta) * sc - steps.spread(r0) * kc + steps.spread(offset)
    cost = 0.5 * steps.sum(residual * residual)
    vouched = np.isfinite(objective) & ~singular & ~rival & np.isfinite(cost)
    return delta, cost, vouched


def step_votes(time: np.ndarray, current: np.ndarray, voltage: np.ndarray, starts: np.ndarray,
               ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``positive_current_is_charge(time[s:e], current[s:e], voltage[s:e])`` for each step ``[s, e)``, and the
    charge it moved (``trapezoid(abs(current[s:e]), time[s:e])``, the vote's weight).

    Steps are solved in batches of about :data:`BATCH_ROWS` rows, so the working arrays stay a few MB whatever
    the length of the series.

    Returns:
        ``(is_charge, p_value, charge_passed)``, one entry per step.

    Example:
        >>> step_votes(t, i, v, np.array([0, 2000]), np.array([2000, 4000]))
        (array([False, False]), array([0.0012, 0.0009]), array([0.555, 0.555]))
    """
    if len(starts) == 0:
        return np.zeros(0, dtype=bool), np.zeros(0), np.zeros(0)
    batch = np.cumsum(ends - starts) // BATCH_ROWS
    cuts = np.flatnonzero(np.diff(batch)) + 1
    votes = [_batch_votes(time, current, voltage, s, e) for s, e in zip(np.split(starts, cuts), np.split(ends, cuts))]
    return tuple(np.concatenate([vote[k] for vote in votes]) for k in range(3))


def _batch_votes(time: np.ndarray, current: np.ndarray, voltage: np.ndarray, starts: np.ndarray,
                 ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    steps = _Steps(starts, ends)
    t, i, v = time[steps.rows], current[steps.rows], voltage[steps.rows]
    first = np.zeros(len(t), dtype=bool)
    first[steps.offsets] = True
    # Charge through each step from its start (the client's cumulative_trapezoid of the current), and moved.
    dt = np.diff(t, prepend=t[0])
    charge_passed = steps.sum(np.where(first, 0.0, dt * (np.abs(i) + np.abs(np.roll(i, 1))) / 2.0))
    pieces = np.where(first, 0.0, dt * (i + np.roll(i, 1)) / 2.0)
    charge = steps.cumulative(pieces)
    q_low, q_high = np.minimum.reduceat(charge, steps.offsets), np.maximum.reduceat(charge, steps.offsets)
    v_low, v_high = np.minimum.reduceat(v, steps.offsets), np.maximum.reduceat(v, steps.offsets)
    span, v_range = q_high - q_low, np.maximum(v_high - v_low, 0.01)
    t_span = np.maximum.reduceat(t, steps.offsets) - np.minimum.reduceat(t, steps.offsets)
    with np.errstate(divide="ignore", invalid="ignore"):
        soc_charge = (charge - steps.spread(q_low)) / steps.spread(span)  # positive current = charge
        soc_discharge = (steps.spread(q_high) - charge) / steps.spread(span)
    bounds = (v_low - v_range, v_high + v_range, 2.0 * v_range)
    delta_dis, cost_dis, vouched_dis = _fit(steps, soc_discharge, -i, v, *bounds)
    delta_chg, cost_chg, vouched_chg = _fit(steps, soc_charge, i, v, *bounds)

    is_charge = delta_chg > delta_dis
    delta_max = np.maximum(delta_dis, delta_chg)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta_ratio = np.minimum(delta_dis, delta_chg) / np.maximum(delta_max, _EPS)
        cost_winner, cost_loser = np.where(is_charge, cost_chg, cost_dis), np.where(is_charge, cost_dis, cost_chg)
        cost_ratio = np.where(cost_loser > _EPS, cost_winner / np.maximum(cost_loser, _EPS), 0.0)
    p_value = np.clip(delta_ratio + cost_ratio, 0.0, 1.0)
    ambiguous = delta_max < _EPS
    is_charge, p_value = np.where(ambiguous, True, is_charge), np.where(ambiguous, 1.0, p_value)

    flat = (v_high - v_low) <= np.maximum(1e-9, 1e-6 * np.maximum(np.maximum(np.abs(v_low), np.abs(v_high)), 1.0))
    near = (np.abs(delta_chg - delta_dis) <= _TIE * delta_max) | (np.abs(delta_max - _EPS) <= _TIE + 0.1 * _EPS) | (
        np.abs(cost_loser - _EPS) <= 0.1 * _EPS)
    special = (steps.lengths <= 3) | (t_span == 0) | (span < 10 * _SPAN_EPS) | flat
    vouched = vouched_dis & vouched_chg & ~near & ~special & np.isfinite(p_value)
    for index in np.flatnonzero(~vouched):
        s, e = starts[index], ends[index]
        is_charge[index], p_value[index] = validators.positive_current_is_charge(time[s:e], current[s:e],
                                                                                 voltage[s:e])
    return is_charge, p_value, charge_passed
