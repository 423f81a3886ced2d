"""IDAKLU solve time per input set for one batched 15-member generation, by solver threads and tolerance.

The model and data of ``pybop_comparison.py`` (SPMe, Chen2020, synthetic 1C discharge, diffusivity as an input),
solved the way the fitting engine solves a differential-evolution generation: one ``solve`` call with 15 input
sets. Compares ``num_threads`` 1 (the engine's setting) and 2 (PyBOP's ``RecommendedSolver`` on this machine),
at rtol 1e-4 (the engine's) and 1e-6 (PyBOP's).

Usage:
    python benchmarks/idaklu_threads.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pybamm

from ionworks_sandbox.compute.synthetic import synthetic_discharge

DN = "Negative particle diffusivity [m2.s-1]"


def per_solve_ms(data, threads: int, rtol: float, repeats: int) -> float:
    t, current, voltage = (data[c].to_numpy() for c in ("Time [s]", "Current [A]", "Voltage [V]"))
    values = pybamm.ParameterValues("Chen2020")
    values.update(
        {
            "Current function [A]": pybamm.Interpolant(t, current, pybamm.t, interpolator="linear"),
            "Lower voltage cut-off [V]": voltage.min() - 0.2,
            "Upper voltage cut-off [V]": voltage.max() + 0.2,
            DN: "[input]",
        }
    )
    solver = pybamm.IDAKLUSolver(
        output_variables=["Voltage [V]"], on_failure="ignore", rtol=rtol, options={"num_threads": threads}
    )
    sim = pybamm.Simulation(pybamm.lithium_ion.SPMe(), parameter_values=values, solver=solver)
    sim.build()
    generation = [{DN: value} for value in np.logspace(-14, -13, 15)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        solver.solve(sim.built_model, t_eval=[t[0], t[-1]], t_interp=t, inputs=generation)
        started = time.perf_counter()
        for _ in range(repeats):
            solver.solve(sim.built_model, t_eval=[t[0], t[-1]], t_interp=t, inputs=generation)
    return (time.perf_counter() - started) / (repeats * len(generation)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    repeats = parser.parse_args().repeats
    data = synthetic_discharge({DN: 2e-14}, c_rates=(1.0,), noise_v=0.001, seed=0, period_s=10.0)
    for rtol in (1e-4, 1e-6):
        one, two = (per_solve_ms(data, threads, rtol, repeats) for threads in (1, 2))
        print(f"rtol {rtol:g}: 1 thread {one:.2f} ms per solve, 2 threads {two:.2f} ms, ratio {one / two:.2f}")


if __name__ == "__main__":
    main()
