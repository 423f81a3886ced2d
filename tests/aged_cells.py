"""Cycler data of a cell in a known state, simulated with PyBaMM directly (not with the sandbox's model code)."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pybamm


def simulate(values: dict[str, float], c_rate: float, model: str = "SPMe", options: dict | None = None,
             temperature_c: float = 25.0, rest_s: float = 600.0, period_s: float = 20.0,
             noise_v: float = 0.001, seed: int = 0) -> pl.DataFrame:  # fmt: skip
    """A rest then a ``c_rate`` discharge to 2.5 V, simulated with PyBaMM, as an Ionworks time series."""
    parameters = pybamm.ParameterValues("Chen2020")
    kelvin = temperature_c + 273.15
    parameters.update({**values, "Ambient temperature [K]": kelvin, "Initial temperature [K]": kelvin},
                      check_already_exists=False)  # fmt: skip
    experiment = pybamm.Experiment(
        [f"Rest for {rest_s:g} seconds", f"Discharge at {c_rate:g}C until 2.5 V"], period=f"{period_s:g} seconds"
    )
    model_class = getattr(pybamm.lithium_ion, model)
    sim = pybamm.Simulation(model_class(options or {}), parameter_values=parameters, experiment=experiment)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        solution = sim.solve()
    time, current, voltage, step = [], [], [], []
    for number, part in enumerate(solution.sub_solutions):
        t = np.asarray(part["Time [s]"].entries, dtype=float)  # a step's first row repeats the last time
        time.append(t)
        current.append(np.asarray(part["Current [A]"].entries, dtype=float))
        voltage.append(np.asarray(part["Voltage [V]"].entries, dtype=float))
        step.append(np.full(t.size, number, dtype=np.int64))
    v = np.concatenate(voltage)
    v = v + np.random.default_rng(seed).normal(0.0, noise_v, v.size)
    t = np.concatenate(time)
    return pl.DataFrame({"Time [s]": t - t[0], "Current [A]": np.concatenate(current), "Voltage [V]": v,
                         "Temperature [degC]": np.full(v.size, temperature_c), "Step count": np.concatenate(step)})
