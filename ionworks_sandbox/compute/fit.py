"""The ``data_fit`` element: fit parameters to one or more objectives (costs summed) with a scipy optimizer.

Parameters whose bounds span a decade or more (diffusivities, rate constants) are optimised in log10; others
in the unit interval of their bounds (or relative to their initial value when unbounded).

Example:
    >>> plan = parse_fit("fit", config, "elements.fit", known, references)
    >>> result, metadata = run_fit(plan, loader, known, progress)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .costs import FAILED_COST, Cost, parse_cost
from .errors import PipelineInputError, UnsupportedFeature
from .models import default_parameter_names, default_value, fittable_names, is_number
from .objectives import ObjectiveRun, ObjectiveSpec, parse_objectives, plots
from .optimizer_config import OptimizerSpec, parse_optimizer
from .optimizers import run_optimizer

_FIT_KEYS = {
    "objectives", "parameters", "cost", "optimizer", "initial_guesses", "multistarts", "cost_logger",
    "initial_guess_sampler", "objective_parallelism", "priors", "options", "source",
}  # fmt: skip
_PARAMETER_KEYS = {"initial_value", "bounds", "normalize", "check_bounds", "check_initial_value", "prior",
                   "initial_guess_distribution"}  # fmt: skip
_OPTION_KEYS = {"seed", "low_memory", "max_iterations", "maxtime", "validate", "skip_objective_callbacks"}
DEFAULT_SEED = 0

Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class FitParameter:
    """A fitted parameter with its bounds (``None`` = unbounded) and how it is scaled for the optimizer."""

    name: str
    initial: float
    lower: float | None
    upper: float | None

    @property
    def log(self) -> bool:
        return self.lower is not None and self.lower > 0 and (self.upper is None or self.upper / self.lower >= 10)

    @property
    def _span(self) -> tuple[float, float]:
        if self.lower is not None and self.upper is not None:
            return self.lower, self.upper - self.lower
        return 0.0, abs(self.initial) or 1.0

    def scale(self, value: float) -> float:
        if self.log:
            return math.log10(value)
        offset, width = self._span
        return (value - offset) / width

    def unscale(self, value: float) -> float:
        if self.log:
            return float(10.0**value)
        offset, width = self._span
        return float(offset + value * width)

    def scaled_bounds(self) -> tuple[float | None, float | None]:
        return (
            None if self.lower is None else self.scale(self.lower),
            None if self.upper is None else self.scale(self.upper),
        )


@dataclass(frozen=True)
class FitPlan:
    """A validated ``data_fit`` element."""

    name: str
    field: str
    objectives: list[ObjectiveSpec]
    parameters: list[FitParameter]
    cost: Cost
    optimizer: OptimizerSpec
    seed: int
    max_seconds: float
    traces: bool
    check_parameters_used: bool
    assumed: dict[str, Any] = field(default_factory=dict)


def parse_fit(
    name: str,
    config: Mapping[str, Any],
    field_path: str,
    known: Mapping[str, Any],
    references: Mapping[str, Mapping[str, Any]],
) -> FitPlan:
    """Validate a ``data_fit`` element (no data loading, no model building)."""
    unknown = sorted(set(config) - _FIT_KEYS - {"element_type"})
    if unknown:
        raise PipelineInputError(f"{field_path}.{unknown[0]}", f"unknown data_fit key {unknown[0]!r}")
    if config.get("priors"):
        raise UnsupportedFeature(f"{field_path}.priors", "priors", ["unset"])
    if config.get("multistarts") not in (None, 0, 1):
        raise UnsupportedFeature(f"{field_path}.multistarts", config["multistarts"], ["1"])
    options = config.get("options") or {}
    bad = sorted(set(options) - _OPTION_KEYS)
    if bad:
        raise PipelineInputError(f"{field_path}.options.{bad[0]}", f"unknown data_fit option {bad[0]!r}")
    assumed: dict[str, Any] = {}
    objectives = parse_objectives(config.get("objectives"), f"{field_path}.objectives", known, references, assumed)
    optimizer = parse_optimizer(config.get("optimizer"), f"{field_path}.optimizer")
    if config.get("optimizer") is None:
        assumed[f"{field_path}.optimizer"] = {"type": optimizer.type}
    if "max_iterations" in options and "max_iterations" not in optimizer.settings:
        optimizer = OptimizerSpec(optimizer.type, {**optimizer.settings, "max_iterations": options["max_iterations"]})
    guesses = _initial_guesses(config.get("initial_guesses"), f"{field_path}.initial_guesses")
    parameters = _parse_parameters(config.get("parameters"), guesses, f"{field_path}.parameters", known)
    if optimizer.is_global:
        for p in parameters:
            if p.lower is None or p.upper is None:
                raise PipelineInputError(
                    f"{field_path}.parameters.{p.name}.bounds", f"{optimizer.type} needs finite bounds"
                )
    if config.get("cost") is None:
        assumed[f"{field_path}.cost"] = {"type": "RMSE"}
    return FitPlan(
        name=name,
        field=field_path,
        objectives=objectives,
        parameters=parameters,
        cost=parse_cost(config.get("cost"), f"{field_path}.cost"),
        optimizer=optimizer,
        seed=int(options.get("seed", DEFAULT_SEED)),
        max_seconds=float(options.get("maxtime", math.inf)),
        traces=not options.get("skip_objective_callbacks", False),
        check_parameters_used=options.get("validate", True) is not False,
        assumed=assumed,
    )


def _initial_guesses(guesses: Any, field_path: str) -> Mapping[str, Any]:
    """One starting point: a ``{name: value}`` dict, or a list holding one (one per start; one start here)."""
    if guesses is None:
        return {}
    if isinstance(guesses, list):
        if len(guesses) != 1:
            raise UnsupportedFeature(field_path, f"{len(guesses)} guesses", ["one guess (multistarts is 1)"])
        guesses = guesses[0]
    if not isinstance(guesses, dict):
        raise PipelineInputError(field_path, "initial_guesses map parameter names to values")
    return guesses


def _parse_parameters(
    parameters: Any, guesses: Mapping[str, Any], field_path: str, known: Mapping[str, Any]
) -> list[FitParameter]:
    if not isinstance(parameters, dict) or not parameters:
        raise PipelineInputError(field_path, "parameters must name at least one parameter to fit")
    out = []
    for name, spec in parameters.items():
        where = f"{field_path}.{name}"
        if not isinstance(spec, dict) or not set(spec) <= _PARAMETER_KEYS:
            raise UnsupportedFeature(where, "expression", ["{initial_value, bounds}"])
        if spec.get("prior") is not None:
            raise UnsupportedFeature(f"{where}.prior", "prior", ["unset"])
        lower, upper = _bounds(spec.get("bounds"), f"{where}.bounds")

        def inside(value: float) -> bool:
            return (lower is None or value >= lower) and (upper is None or value <= upper)

        initial = next((v for v in (guesses.get(name), spec.get("initial_value")) if is_number(v)), None)
        if initial is not None and not inside(initial) and spec.get("check_initial_value", True) is not False:
            raise PipelineInputError(f"{where}.initial_value", f"{initial} is outside the bounds [{lower}, {upper}]")
        if initial is None:
            initial = next((v for v in (known.get(name), _default_number(name)) if is_number(v) and inside(v)), None)
        if initial is None and lower is not None and upper is not None:
            initial = math.sqrt(lower * upper) if lower > 0 else (lower + upper) / 2
        if initial is None:
            raise PipelineInputError(where, "needs an initial_value or finite bounds")
        out.append(FitParameter(name, float(initial), lower, upper))
    return out


def _default_number(name: str) -> float | None:
    value = default_value(name) if name in default_parameter_names() else None
    return float(value) if is_number(value) else None


def _bounds(bounds: Any, field_path: str) -> tuple[float | None, float | None]:
    if bounds is None:
        return None, None
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise PipelineInputError(field_path, "bounds are [lower, upper] (null for unbounded)")
    lower, upper = (None if b is None or (is_number(b) and math.isinf(b)) else b for b in bounds)
    for b in (lower, upper):
        if b is not None and not is_number(b):
            raise PipelineInputError(field_path, f"bound {b!r} is not a number")
    if lower is not None and upper is not None and lower >= upper:
        raise PipelineInputError(field_path, f"lower bound {lower} is not below upper bound {upper}")
    return (None if lower is None else float(lower)), (None if upper is None else float(upper))


def run_fit(
    plan: FitPlan, loader: Callable, known: Mapping[str, Any], progress: Progress
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit; returns the ``OptimizationResult`` dict and the element's metadata (traces, intermediate results)."""
    started = time.monotonic()
    names = [p.name for p in plan.parameters]
    if plan.check_parameters_used:
        used = set().union(*(fittable_names(spec.model, {**known, **spec.overrides}) for spec in plan.objectives))
        unused = [name for name in names if name not in used]
        if unused:
            models = sorted({spec.model.type for spec in plan.objectives})
            raise PipelineInputError(
                f"{plan.field}.parameters.{unused[0]}",
                f"'{unused[0]}' is not a parameter of the {'/'.join(models)} model, so it cannot be fitted",
            )
    runs = [ObjectiveRun.load(spec, loader, known, names) for spec in plan.objectives]
    costs = {run.spec.name: run.spec.cost or plan.cost for run in runs}

    def rows(points: np.ndarray) -> list[dict[str, float]]:
        return [{p.name: p.unscale(u) for p, u in zip(plan.parameters, point)} for point in np.atleast_2d(points)]

    def per_objective(points: np.ndarray) -> dict[str, np.ndarray]:
        values = rows(points)
        return {run.spec.name: costs[run.spec.name].evaluate(run.voltages(values), run.series.voltage) for run in runs}

    def total(parts: dict[str, np.ndarray]) -> np.ndarray:
        summed = sum(costs[name].weight(name) * np.minimum(value, FAILED_COST) for name, value in parts.items())
        return np.minimum(summed, FAILED_COST)

    def batch_cost(points: np.ndarray) -> np.ndarray:
        return total(per_objective(points))

    def batch_residuals(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Costs and residual rows: each objective's normalised errors scaled so their squares sum to its
        weighted mean square error (so least squares balances objectives of different lengths)."""
        values = rows(points)
        parts, blocks = {}, []
        for run in runs:
            name, cost = run.spec.name, costs[run.spec.name]
            model = run.voltages(values)
            parts[name] = cost.evaluate(model, run.series.voltage)
            scale = math.sqrt(cost.weight(name) / run.series.voltage.size)
            blocks.append(scale * cost.residuals(model, run.series.voltage))
        return total(parts), np.concatenate(blocks, axis=1)

    history: list[dict[str, Any]] = []
    last_report = [0.0]

    def on_iteration(iteration: int, evaluations: int, best_x: np.ndarray, best_fun: float) -> None:
        unscaled = rows(best_x)[0]
        history.append({"iteration": iteration, "evaluations": evaluations, "best_cost": best_fun, "cost": best_fun,
                        "inputs": dict(zip(names, map(float, best_x))), "inputs_unscaled": unscaled})  # fmt: skip
        if time.monotonic() - last_report[0] >= 0.25:
            last_report[0] = time.monotonic()
            progress({"best_cost": best_fun, "evaluations": evaluations, "iteration": iteration})

    x0 = np.array([p.scale(p.initial) for p in plan.parameters])
    outcome = run_optimizer(
        plan.optimizer, batch_cost, [p.scaled_bounds() for p in plan.parameters], x0,
        seed=plan.seed, on_iteration=on_iteration, max_seconds=plan.max_seconds, residuals=batch_residuals,
    )  # fmt: skip
    progress({"best_cost": outcome.fun, "evaluations": outcome.evaluations, "iteration": outcome.iterations})
    fitted = rows(outcome.x)[0]
    parts = per_objective(outcome.x)
    by_objective = {name: float(value[0]) for name, value in parts.items()}
    best_cost = float(total(parts)[0])  # the fit's cost at its result, whatever the optimizer minimised
    result = {
        "type": "OptimizationResult",
        "parameter_values": fitted,
        "x": [fitted[n] for n in names],
        "fun": best_cost,
        "cost": best_cost,
        "success": outcome.success,
        "message": outcome.message,
        "evaluations": outcome.evaluations,
        "iterations": outcome.iterations,
        "initial_guess": {p.name: p.initial for p in plan.parameters},
        "costs_by_objective": by_objective,
    }
    metadata = {
        "element_type": "data_fit",
        "objectives": {run.spec.name: run.describe() for run in runs},
        "parameters": {p.name: {"initial_value": p.initial, "bounds": [p.lower, p.upper],
                                "scale": "log10" if p.log else "linear"} for p in plan.parameters},  # fmt: skip
        "cost": plan.cost.to_wire(),
        "optimizer": {"type": plan.optimizer.type, "settings": plan.optimizer.settings, "seed": plan.seed,
                      "message": outcome.message},  # fmt: skip
        "assumed": plan.assumed,
        "intermediate_results": history,
        "wall_time_s": time.monotonic() - started,
    }
    if plan.traces:
        metadata.update(_fit_traces(runs, fitted, rows(x0)[0]))
    return result, metadata


def _fit_traces(runs: list[ObjectiveRun], fitted: dict[str, float], initial: dict[str, float]) -> dict[str, Any]:
    optimal = {run.spec.name: run.trace(run.voltages([fitted])[0]) for run in runs}
    baseline = {run.spec.name: run.trace(run.voltages([initial])[0]) for run in runs}
    return {
        "validation_results": optimal,
        "baseline_validation_results": baseline,
        "validation_plot_config": {"objectives": {r.spec.name: {"plot_count": 2, "type": r.spec.type} for r in runs}},
        "plots": {name: plots(trace) for name, trace in optimal.items()},
    }
