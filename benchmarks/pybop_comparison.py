"""The sandbox's fitting engine against PyBOP on the same one-parameter SPMe fit, in the same process.

Both fit "Negative particle diffusivity [m2.s-1]" (bounds 1e-14..1e-13, searched in log space) to a synthetic
1C discharge with 1 mV noise by scipy differential evolution with the same settings (population 15 per
parameter, tol 0.01, no polish, same seed), and an RMSE cost:

- the engine through ``run_pipeline`` with the config the official client sends (``ScipyDifferentialEvolution``),
  once on fresh data (model built) and once more on the same data (model reused from the engine's cache); its
  default ``DifferentialEvolution`` is timed too;
- PyBOP 26.3: ``pybop.pybamm.Simulator`` (model built once, the parameter as an input) + ``pybop.Problem`` +
  ``pybop.SciPyDifferentialEvolution``, timing set-up and fit separately.

Each repetition uses new noise (seed = repetition), so every first engine fit builds its model. One untimed
fit of each runs first, so import and first-solve costs are in neither figure.

PyBOP caps numpy below 2.4, so it lives in a side environment, never in the project's:

    python3 -m venv /tmp/pybop-venv
    /tmp/pybop-venv/bin/pip install pybop==26.3 "pybamm==26.10.*" polars ionworks-schema ionworks-api
    /tmp/pybop-venv/bin/pip install -e . --no-deps
    /tmp/pybop-venv/bin/python benchmarks/pybop_comparison.py [--repeats 3]

Without pybop the script says so and exits with status 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass

try:
    import pybop
except ImportError as exc:
    print(f"pybop is not importable ({exc}); run this in the side environment described in its docstring.")
    sys.exit(0)

import ionworks_schema as iws
import numpy as np
import polars as pl
import pybamm
from ionworks.validators import run_validators_outbound

from ionworks_sandbox.compute.pipeline import run_pipeline
from ionworks_sandbox.compute.synthetic import synthetic_discharge

DN = "Negative particle diffusivity [m2.s-1]"
TRUE_DN = 2.0e-14
BOUNDS = (1e-14, 1e-13)
INITIAL = 5e-14
POPSIZE = 15
TOL = 0.01
#: The engine widens the cut-offs this far beyond the measured voltage range; PyBOP gets the same.
CUTOFF_MARGIN_V = 0.2


@dataclass
class Run:
    seconds: float
    evaluations: int
    value: float

    @property
    def error(self) -> float:
        return abs(self.value / TRUE_DN - 1)


def engine_fit(data: pl.DataFrame, optimizer: iws.BaseSchema) -> Run:
    pipeline = iws.Pipeline(
        {
            "fit": iws.DataFit(
                objectives={"1C": iws.objectives.CurrentDriven(data_input=data, options={"model": {"type": "SPMe"}})},
                parameters={DN: iws.Parameter(DN, initial_value=INITIAL, bounds=BOUNDS)},
                cost=iws.costs.RMSE(),
                optimizer=optimizer,
            )
        }
    )
    elements = run_validators_outbound(pipeline.to_config())["elements"]
    started = time.perf_counter()
    fit = run_pipeline(elements, lambda measurement_id: None, lambda update: None)["element_results"]["fit"]
    return Run(time.perf_counter() - started, fit["evaluations"], fit["parameter_values"][DN])


def pybop_fit(data: pl.DataFrame, seed: int) -> tuple[float, Run]:
    """``(set-up seconds, fit)``: set-up builds the simulator and problem, the fit runs the optimiser."""
    t, current, voltage = (data[c].to_numpy() for c in ("Time [s]", "Current [A]", "Voltage [V]"))
    started = time.perf_counter()
    dataset = pybop.Dataset({"Time [s]": t, "Current [A]": current, "Voltage [V]": voltage})
    values = pybamm.ParameterValues("Chen2020")
    values.update(
        {
            "Lower voltage cut-off [V]": voltage.min() - CUTOFF_MARGIN_V,
            "Upper voltage cut-off [V]": voltage.max() + CUTOFF_MARGIN_V,
            DN: pybop.Parameter(bounds=BOUNDS, initial_value=INITIAL, transformation=pybop.LogTransformation()),
        }
    )
    simulator = pybop.pybamm.Simulator(pybamm.lithium_ion.SPMe(), parameter_values=values, protocol=dataset)
    problem = pybop.Problem(simulator, pybop.RootMeanSquaredError(dataset, target=["Voltage [V]"]))
    options = pybop.SciPyDifferentialEvolutionOptions(popsize=POPSIZE, tol=TOL, polish=False, seed=seed)
    optimiser = pybop.SciPyDifferentialEvolution(problem, options)
    set_up = time.perf_counter() - started
    started = time.perf_counter()
    result = optimiser.run()
    return set_up, Run(time.perf_counter() - started, int(result.total_evaluations()), float(result.x[0]))


def scipy_de(seed: int) -> iws.BaseSchema:
    return iws.optimizers.ScipyDifferentialEvolution(popsize=POPSIZE, tol=TOL, polish=False, seed=seed)


def line(label: str, run: Run, extra: str = "") -> str:
    return f"  {label:<44} {run.seconds:6.2f} s  {run.evaluations:4d} evals  rel. error {run.error:.1e}{extra}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats
    print(f"pybop {pybop.__version__}, pybamm {pybamm.__version__}, numpy {np.__version__}")
    warm_up = synthetic_discharge({DN: TRUE_DN}, c_rates=(1.0,), noise_v=0.001, seed=100, period_s=10.0)
    engine_fit(warm_up, scipy_de(0))
    pybop_fit(warm_up, 0)
    cold, warm, default, setups, fits = [], [], [], [], []
    for rep in range(repeats):
        data = synthetic_discharge({DN: TRUE_DN}, c_rates=(1.0,), noise_v=0.001, seed=rep, period_s=10.0)
        cold.append(engine_fit(data, scipy_de(rep)))
        warm.append(engine_fit(data, scipy_de(rep)))
        default.append(engine_fit(data, iws.optimizers.DifferentialEvolution()))
        set_up, fit = pybop_fit(data, rep)
        setups.append(set_up)
        fits.append(fit)
        print(f"repetition {rep + 1}: {data.height} points, true Dn {TRUE_DN:.2e}")
        print(line("engine ScipyDE, model built (run_pipeline)", cold[-1]))
        print(line("engine ScipyDE, cached model (run_pipeline)", warm[-1]))
        print(line("engine DifferentialEvolution, cached model", default[-1]))
        print(line("PyBOP SciPyDifferentialEvolution, fit", fit, f"  (+{set_up:.2f} s set-up)"))

    def median(values: list[float]) -> float:
        return statistics.median(values)

    engine_total = median([r.seconds for r in cold])
    engine_fit_only = median([r.seconds for r in warm])
    pybop_fit_only = median([r.seconds for r in fits])
    pybop_total = median([s + r.seconds for s, r in zip(setups, fits)])
    per_eval_engine = median([r.seconds / r.evaluations for r in warm])
    per_eval_pybop = median([r.seconds / r.evaluations for r in fits])
    print(f"medians over {repeats} repetitions:")
    print(f"  engine build+fit {engine_total:.2f} s, PyBOP set-up+fit {pybop_total:.2f} s, "
          f"ratio engine/PyBOP {engine_total / pybop_total:.2f}")  # fmt: skip
    print(f"  engine fit (cached model) {engine_fit_only:.2f} s, PyBOP fit {pybop_fit_only:.2f} s, "
          f"ratio engine/PyBOP {engine_fit_only / pybop_fit_only:.2f}")  # fmt: skip
    print(f"  per evaluation: engine {per_eval_engine * 1e3:.2f} ms, PyBOP {per_eval_pybop * 1e3:.2f} ms, "
          f"ratio {per_eval_engine / per_eval_pybop:.2f}")  # fmt: skip
    print(f"  relative error: engine max {max(r.error for r in cold):.1e}, PyBOP max {max(r.error for r in fits):.1e}")


if __name__ == "__main__":
    main()
