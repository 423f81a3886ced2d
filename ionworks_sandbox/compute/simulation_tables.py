"""Tables of a simulation result: the time series (capacities reset per step) and the per-step summary.

Example:
    >>> ts = time_series_table(run, outputs)   # run: [(ucp.Step, pybamm step solution), ...]
    >>> steps = step_table(ts, [step for step, _ in run])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from .ucp import Step

_RENAMED = {"Volume-averaged cell temperature [K]": "Temperature [K]"}
_CUMULATIVE = {"Discharge capacity [A.h]": ("Discharge capacity [A.h]", "Charge capacity [A.h]"),
               "Discharge energy [W.h]": ("Discharge energy [W.h]", "Charge energy [W.h]")}
_STEP_TYPES = {"C-rate": "current", "Current": "current", "Voltage": "voltage", "Power": "power"}
#: Columns of ``ionworksdata.steps.summarize`` that carry nothing for a simulation.
_DROPPED = ("Step from cycler", "Cycle from cycler", "Min frequency [Hz]", "Max frequency [Hz]",
            "Std frequency [Hz]", "Mean frequency [Hz]")


def time_series_table(run: Sequence[tuple[Step, Any]], outputs: Sequence[str]) -> pl.DataFrame:
    """One row per solver output point: time, current (discharge positive), voltage, step count, per-step
    discharge/charge capacity and energy, temperature and any extra variables.

    Example:
        >>> time_series_table(run, ["Time [s]", "Current [A]", "Voltage [V]", ...]).columns[:3]
        ['Time [s]', 'Current [A]', 'Voltage [V]']
    """
    columns: dict[str, list[np.ndarray]] = {"Step count": []}
    for count, (_, solution) in enumerate(run):
        length = len(solution.t)
        columns["Step count"].append(np.full(length, count, dtype=np.int64))
        for name in outputs:
            values = np.asarray(solution[name].entries, dtype=float)
            if values.ndim != 1 or values.size != length:
                raise ValueError(f"variable {name!r} is not a scalar over time, so it cannot be a column")
            if name in _CUMULATIVE:
                gained = np.diff(values, prepend=values[0])
                up, down = _CUMULATIVE[name]
                columns.setdefault(up, []).append(np.cumsum(np.clip(gained, 0.0, None)))
                columns.setdefault(down, []).append(np.cumsum(np.clip(-gained, 0.0, None)))
            else:
                columns.setdefault(_RENAMED.get(name, name), []).append(values)
    order = ["Time [s]", "Current [A]", "Voltage [V]", "Step count", "Discharge capacity [A.h]",
             "Charge capacity [A.h]", "Discharge energy [W.h]", "Charge energy [W.h]", "Temperature [K]"]
    order += [name for name in columns if name not in order]
    frame = pl.DataFrame({name: np.concatenate(columns[name]) for name in order})
    return frame.with_columns(pl.col(pl.Float64).fill_nan(None))


def step_table(time_series: pl.DataFrame, steps: Sequence[Step]) -> pl.DataFrame:
    """One row per run step (``ionworksdata.steps.summarize``), typed by the protocol rather than inferred.

    Adds ``Protocol step`` (the UCP step number) and ``Label`` (its group name, if any).

    Example:
        >>> step_table(ts, [step for step, _ in run])["Step type"].to_list()
        ['Constant current discharge']
    """
    from ionworksdata.steps import summarize

    base = [c for c in time_series.columns if c in ("Time [s]", "Current [A]", "Voltage [V]", "Step count")
            or c.endswith(("capacity [A.h]", "energy [W.h]"))]
    summary = summarize(time_series.select(base))
    summary = summary.drop([c for c in _DROPPED if c in summary.columns])
    return summary.with_columns(
        pl.Series("Step type", [step_type(step) for step in steps], dtype=pl.String),
        pl.Series("Protocol step", [step.number for step in steps], dtype=pl.Int64),
        pl.Series("Label", [step.label for step in steps], dtype=pl.String),
    ).with_columns(pl.col(pl.Float64).fill_nan(None))


def step_type(step: Step) -> str:
    """``"Rest"`` or e.g. ``"Constant current discharge"``, in the words ``ionworksdata`` uses.

    Example:
        >>> step_type(Step(1, "Charge", "Voltage", 4.2, ()))
        'Constant voltage charge'
    """
    if step.direction == "Rest":
        return "Rest"
    return f"Constant {_STEP_TYPES[step.mode]} {step.direction.lower()}"


def sanitize_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Plain Python numbers, with NaN and infinities as ``None``.

    Example:
        >>> sanitize_metrics({"a": float("nan"), "b": np.float64(2.0)})
        {'a': None, 'b': 2.0}
    """
    clean: dict[str, Any] = {}
    for name, value in metrics.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        clean[name] = value
    return clean
