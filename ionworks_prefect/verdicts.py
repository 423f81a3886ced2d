"""Verdicts on a new per-test fit: does the model still fit, and how far has the cell moved?

Fit quality is the worst objective's voltage RMSE (mV) against a threshold. Drift is each parameter's relative
change against the cell's first fitted test (the baseline) and against the previous one; a parameter drifted
when either passes the drift threshold, so a slow creep is caught by the baseline comparison. The trend is the
least-squares slope over the history, as a fraction of the baseline value per 30 days, and per equivalent full
cycle where the tests carry their throughput.

Example:
    ```python
    from ionworks_prefect.verdicts import assess_fit

    verdict = assess_fit(history_sets, drift_threshold=0.05, rmse_threshold_mv=20.0)
    print(verdict.verdict, verdict.drifted)
    ```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
from pydantic import BaseModel, Field

from .parameter_sets import FittedParameterSet

DAYS_PER_TREND = 30.0


class ParameterChange(BaseModel):
    """How one parameter moved: relative changes against the baseline and the previous fit, and its trend."""

    parameter: str
    value: float
    baseline: Optional[float] = None
    previous: Optional[float] = None
    change_vs_baseline: Optional[float] = Field(default=None, description="(value - baseline) / |baseline|.")
    change_vs_previous: Optional[float] = Field(default=None, description="(value - previous) / |previous|.")
    change_per_30_days: Optional[float] = Field(default=None, description="Trend slope, fraction of baseline / 30 d.")
    change_per_efc: Optional[float] = Field(default=None, description="Trend slope, fraction of baseline / cycle.")


class FitVerdict(BaseModel):
    """The assessment of one new fit of one cell's test."""

    cell: Optional[str]
    test: Optional[str]
    pipeline_id: str
    baseline_test: Optional[str]
    previous_test: Optional[str]
    rmse_mv: dict[str, float] = Field(description="Voltage RMSE per objective, mV.")
    worst_rmse_mv: Optional[float]
    rmse_threshold_mv: float
    drift_threshold: float
    drift_thresholds: dict[str, float] = Field(default_factory=dict,
                                               description="Per-parameter thresholds that replace drift_threshold.")
    changes: list[ParameterChange]
    degraded: bool = Field(description="The worst objective's RMSE is above the threshold.")
    drifted: list[str] = Field(description="Parameters whose change against baseline or previous passed the threshold.")

    @property
    def verdict(self) -> str:
        """``baseline`` (first test), ``ok``, ``drifted``, ``degraded`` or ``drifted, degraded``."""
        flags = [name for name, on in (("drifted", bool(self.drifted)), ("degraded", self.degraded)) if on]
        if flags:
            return ", ".join(flags)
        return "baseline" if self.previous_test is None and self.baseline_test == self.test else "ok"

    def event_payload(self) -> dict[str, Any]:
        """What an automation needs without another query: cell, test, values, changes, RMSE and thresholds."""
        return {
            "cell": self.cell, "test": self.test, "pipeline_id": self.pipeline_id, "verdict": self.verdict,
            "baseline_test": self.baseline_test, "previous_test": self.previous_test,
            "values": {c.parameter: c.value for c in self.changes},
            "change_vs_baseline": {c.parameter: c.change_vs_baseline for c in self.changes},
            "change_vs_previous": {c.parameter: c.change_vs_previous for c in self.changes},
            "change_per_30_days": {c.parameter: c.change_per_30_days for c in self.changes},
            "drifted": self.drifted, "drift_threshold": self.drift_threshold,
            "drift_thresholds": self.drift_thresholds,
            "rmse_mv": self.rmse_mv, "worst_rmse_mv": self.worst_rmse_mv, "rmse_threshold_mv": self.rmse_threshold_mv,
        }


def _relative(value: float, reference: float | None) -> float | None:
    return (value - reference) / abs(reference) if reference else None


def _slope(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 2 or max(xs) - min(xs) <= 0:
        return None
    return float(np.polyfit(np.asarray(xs), np.asarray(ys), 1)[0])


def _trend(sets: Sequence[FittedParameterSet], name: str, baseline: float | None,
           axis: str) -> float | None:
    """Least-squares slope of ``name`` over the sets that have it, in baseline fractions per unit of ``axis``."""
    if not baseline:
        return None
    points = []
    for s in sets:
        if name not in s.values:
            continue
        if axis == "days":
            when = s.tested_at or s.created_at
            points.append((when.timestamp() / 86400.0, s.values[name]))
        elif s.equivalent_full_cycles is not None:
            points.append((s.equivalent_full_cycles, s.values[name]))
    slope = _slope([p[0] for p in points], [p[1] for p in points])
    return None if slope is None else slope / abs(baseline)


def assess_fit(sets: Sequence[FittedParameterSet], *, drift_threshold: float = 0.05,
               rmse_threshold_mv: float = 20.0, drift_thresholds: Mapping[str, float] | None = None) -> FitVerdict:
    """Assess the last of ``sets`` (a cell's fits, oldest test first) against the first and the one before it.

    Curve knots (an adapted OCP's values) shape the model but are not followed for drift. ``drift_thresholds``
    gives parameters their own threshold (e.g. the looser one a discharge pins a diffusivity down to).

    Example:
        >>> assess_fit([rpt0, rpt1, rpt2], drift_threshold=0.05).drifted
        ['Negative electrode active material volume fraction']
    """
    if not sets:
        raise ValueError("assess_fit needs at least one fitted set")
    latest, first = sets[-1], sets[0]
    previous = sets[-2] if len(sets) > 1 else None
    changes = []
    for name, value in ((p.name, p.value) for p in latest.headline):
        baseline = first.values.get(name) if first is not latest else None
        before = previous.values.get(name) if previous is not None else None
        per_day = _trend(sets, name, baseline, "days")
        changes.append(ParameterChange(
            parameter=name, value=value, baseline=baseline, previous=before,
            change_vs_baseline=_relative(value, baseline), change_vs_previous=_relative(value, before),
            change_per_30_days=None if per_day is None else per_day * DAYS_PER_TREND,
            change_per_efc=_trend(sets, name, baseline, "efc"),
        ))
    limits = dict(drift_thresholds or {})
    drifted = [c.parameter for c in changes
               if any(r is not None and abs(r) > limits.get(c.parameter, drift_threshold)
                      for r in (c.change_vs_baseline, c.change_vs_previous))]
    worst = max(latest.rmse_mv.values()) if latest.rmse_mv else None
    return FitVerdict(cell=latest.cell, test=latest.test, pipeline_id=latest.pipeline_id, baseline_test=first.test,
                      previous_test=previous.test if previous else None, rmse_mv=dict(latest.rmse_mv),
                      worst_rmse_mv=worst, rmse_threshold_mv=rmse_threshold_mv, drift_threshold=drift_threshold,
                      drift_thresholds=limits,
                      changes=changes, degraded=worst is not None and worst > rmse_threshold_mv, drifted=drifted)
