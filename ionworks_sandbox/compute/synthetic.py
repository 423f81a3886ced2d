"""Synthetic cycler data from PyBaMM (Chen2020 plus overrides), valid as an Ionworks time series.

Example:
    >>> frame = synthetic_discharge({"Negative particle diffusivity [m2.s-1]": 2e-14}, c_rates=(1.0,))
    >>> frame.columns
    ['Time [s]', 'Current [A]', 'Voltage [V]', 'Step count']
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
import pybamm

from .models import MODEL_CLASSES, parameter_values

#: Rest between two discharges, in seconds.
REST_S = 600.0


def synthetic_discharge(
    parameters: Mapping[str, float],
    c_rates: Sequence[float] = (1.0,),
    model: str = "SPMe",
    noise_v: float = 0.001,
    seed: int = 0,
    period_s: float = 10.0,
    model_options: Mapping[str, str] | None = None,
    rest_first_s: float = 0.0,
) -> pl.DataFrame:
    """Simulate constant-current discharges and return them as an Ionworks-valid time series.

    Each C-rate (relative to ``Nominal cell capacity [A.h]``) discharges from where the previous step left the
    cell to the lower voltage cut-off, and consecutive discharges are separated by a ``REST_S`` rest; the
    first starts from the parameter set's initial concentrations (Chen2020: fully charged). Columns:
    ``Time [s]`` (from 0, sampled every ``period_s``, plus each step's end), ``Current [A]`` (discharge
    positive), ``Voltage [V]`` (plus Gaussian noise of ``noise_v`` volts, seeded by ``seed``) and
    ``Step count`` (0, 1, ... one per discharge or rest). A step's first row has the time of the previous
    step's last row (as cyclers log a step change), so time is non-decreasing rather than strictly increasing.

    Args:
        parameters: overrides of the Chen2020 values (e.g. the "true" values a fit should recover).
        c_rates: discharge rates in order, e.g. ``(1.0, 0.5)``.
        model: ``"SPM"``, ``"SPMe"`` or ``"DFN"``.
        noise_v: standard deviation of the voltage noise, in volts (0 for none).
        seed: seed of the noise.
        period_s: sampling period, in seconds.
        model_options: PyBaMM model options, e.g. ``{"contact resistance": "true"}``.
        rest_first_s: a rest before the first discharge, in seconds (0: none), as a cycler logs before a test.

    Example:
        >>> synthetic_discharge({}, c_rates=(1.0, 0.5), period_s=20.0)["Step count"].unique().to_list()
        [0, 1, 2]
    """
    if model not in MODEL_CLASSES:
        raise ValueError(f"model must be one of {sorted(MODEL_CLASSES)}, not {model!r}")
    if not c_rates or any(rate <= 0 for rate in c_rates):
        raise ValueError("c_rates must be positive discharge rates")
    if period_s <= 0:
        raise ValueError("period_s must be positive")
    values = parameter_values(dict(parameters))
    v_min = values["Lower voltage cut-off [V]"]
    steps: list[str] = [f"Rest for {rest_first_s:g} seconds"] if rest_first_s > 0 else []
    for index, rate in enumerate(c_rates):
        if index:
            steps.append(f"Rest for {REST_S:g} seconds")
        steps.append(f"Discharge at {rate:g}C until {v_min:g} V")
    experiment = pybamm.Experiment(steps, period=f"{period_s:g} seconds")
    sim = pybamm.Simulation(MODEL_CLASSES[model](dict(model_options or {})), parameter_values=values,
                            experiment=experiment)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        solution = sim.solve()
    times, currents, voltages, step_counts = [], [], [], []
    for number, step in enumerate(solution.sub_solutions):
        t = np.asarray(step["Time [s]"].entries, dtype=float)
        times.append(t)
        currents.append(np.asarray(step["Current [A]"].entries, dtype=float))
        voltages.append(np.asarray(step["Voltage [V]"].entries, dtype=float))
        step_counts.append(np.full(t.size, number, dtype=np.int64))
    time = np.concatenate(times)
    voltage = np.concatenate(voltages)
    if noise_v:
        voltage = voltage + np.random.default_rng(seed).normal(0.0, noise_v, voltage.size)
    return pl.DataFrame(
        {
            "Time [s]": time - time[0],
            "Current [A]": np.concatenate(currents),
            "Voltage [V]": voltage,
            "Step count": np.concatenate(step_counts),
        }
    )
