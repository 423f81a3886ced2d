"""Fit speed of the sandbox's pipeline engine against a bare scipy loop over a prebuilt PyBaMM model.

Both fit "Negative particle diffusivity [m2.s-1]" of an SPMe model to the same synthetic 1C discharge
(1 mV noise) with scipy differential evolution (popsize 15, one batched IDAKLU call per generation). The
engine goes through ``run_pipeline`` with the config the official client sends; the baseline calls scipy
directly on a model built beforehand. Target: the engine fit finishes in <= 5 s.

Usage:
    python benchmarks/fit_speed.py
"""

from __future__ import annotations

import time

import ionworks_schema as iws
import numpy as np
import pybamm
from ionworks.validators import run_validators_outbound
from scipy import optimize

from ionworks_sandbox.compute.pipeline import run_pipeline
from ionworks_sandbox.compute.synthetic import synthetic_discharge

DN = "Negative particle diffusivity [m2.s-1]"
TRUE_DN = 2.0e-14
BOUNDS = (1e-14, 1e-13)
TARGET_S = 5.0


def engine_fit(elements: dict) -> tuple[float, int, float]:
    started = time.perf_counter()
    out = run_pipeline(elements, lambda measurement_id: None, lambda update: None)
    elapsed = time.perf_counter() - started
    fit = out["element_results"]["fit"]
    return elapsed, fit["evaluations"], fit["parameter_values"][DN]


def baseline_fit(data) -> tuple[float, float, int, float]:
    """Build once with the diffusivity as an input, then scipy DE over log10(D), one batched solve per generation."""
    t, current, voltage = (data[c].to_numpy() for c in ("Time [s]", "Current [A]", "Voltage [V]"))
    started = time.perf_counter()
    values = pybamm.ParameterValues("Chen2020")
    values.update(
        {
            "Current function [A]": pybamm.Interpolant(t, current, pybamm.t, interpolator="linear"),
            "Lower voltage cut-off [V]": voltage.min() - 0.2,
            DN: "[input]",
        }
    )
    solver = pybamm.IDAKLUSolver(output_variables=["Voltage [V]"], on_failure="ignore")
    sim = pybamm.Simulation(pybamm.lithium_ion.SPMe(), parameter_values=values, solver=solver)
    sim.build()
    solver.solve(sim.built_model, t_eval=[t[0], t[-1]], t_interp=t, inputs={DN: TRUE_DN})  # solver set-up
    built = time.perf_counter() - started
    evaluations = 0

    def cost(log_d: np.ndarray) -> np.ndarray:
        nonlocal evaluations
        inputs = [{DN: 10.0**x} for x in np.atleast_2d(log_d)[0]]
        evaluations += len(inputs)
        solutions = solver.solve(sim.built_model, t_eval=[t[0], t[-1]], t_interp=t, inputs=inputs)
        out = []
        for solution in solutions:
            v = np.interp(t, solution.t, solution["Voltage [V]"].entries, right=solution["Voltage [V]"].entries[-1])
            out.append(np.sqrt(np.mean((v - voltage) ** 2)))
        return np.array(out)

    started = time.perf_counter()
    result = optimize.differential_evolution(
        cost, [tuple(np.log10(BOUNDS))], popsize=15, polish=False, rng=0, vectorized=True, updating="deferred"
    )
    return time.perf_counter() - started, built, evaluations, 10.0 ** result.x[0]


def main() -> None:
    data = synthetic_discharge({DN: TRUE_DN}, c_rates=(1.0,), noise_v=0.001, seed=0, period_s=10.0)
    pipeline = iws.Pipeline(
        {
            "fit": iws.DataFit(
                objectives={"1C": iws.objectives.CurrentDriven(data_input=data, options={"model": {"type": "SPMe"}})},
                parameters={DN: iws.Parameter(DN, initial_value=5e-14, bounds=BOUNDS)},
                cost=iws.costs.RMSE(),
                optimizer=iws.optimizers.DifferentialEvolution(),
            )
        }
    )
    elements = run_validators_outbound(pipeline.to_config())["elements"]
    cold, cold_evals, cold_dn = engine_fit(elements)
    warm, warm_evals, warm_dn = engine_fit(elements)
    base, base_build, base_evals, base_dn = baseline_fit(data)
    print(f"data: synthetic SPMe 1C discharge, {data.height} points, 1 mV noise, true Dn {TRUE_DN:.3e}")
    print(f"engine run_pipeline, first fit (builds model): {cold:.2f} s, {cold_evals} evaluations, "
          f"Dn error {abs(cold_dn / TRUE_DN - 1):.1e}")  # fmt: skip
    print(f"engine run_pipeline, repeat fit (cached model): {warm:.2f} s, {warm_evals} evaluations, "
          f"Dn error {abs(warm_dn / TRUE_DN - 1):.1e}")  # fmt: skip
    print(f"baseline scipy loop over prebuilt model: {base:.2f} s (+{base_build:.2f} s build and first solve), "
          f"{base_evals} evaluations, "
          f"Dn error {abs(base_dn / TRUE_DN - 1):.1e}")  # fmt: skip
    print(f"ratio engine first fit / baseline: {cold / base:.2f}")
    print(f"ratio engine repeat fit / baseline: {warm / base:.2f}")
    print(f"ratio per evaluation, engine repeat / baseline: {(warm / warm_evals) / (base / base_evals):.2f}")
    print(f"target engine fit <= {TARGET_S:.1f} s: {'met' if cold <= TARGET_S else 'missed'}")


if __name__ == "__main__":
    main()
