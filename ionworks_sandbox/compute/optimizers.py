"""Optimizers (``ionworks_schema.optimizers``) run with scipy over scaled parameters.

``DifferentialEvolution`` and ``ScipyDifferentialEvolution`` evaluate a whole generation in one batched call;
``ScipyMinimize`` runs a local method; ``ScipyLeastSquares`` runs scipy's trust-region least squares on the
residual vector, its finite-difference Jacobian solved as one batch; ``DummyOptimizer`` evaluates the initial
guess. Every run is capped at
``MAX_EVALUATIONS`` evaluations and ``MAX_SECONDS`` so sandbox fits stay short.

Example:
    >>> spec = parse_optimizer({"type": "DifferentialEvolution"}, "elements.fit.optimizer")
    >>> outcome = run_optimizer(spec, batch_cost, [(-14.0, -13.0)], np.array([-13.7]), seed=0, on_iteration=print)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

from .errors import PipelineInputError, UnsupportedFeature

OPTIMIZERS = ("DifferentialEvolution", "DummyOptimizer", "ScipyDifferentialEvolution", "ScipyLeastSquares",
              "ScipyMinimize")  # fmt: skip
LOCAL_METHODS = ("COBYQA", "L-BFGS-B", "Nelder-Mead", "Powell", "SLSQP", "TNC")
MAX_EVALUATIONS = 5000
MAX_SECONDS = 300.0
#: Residual given to every point of a failed solve (normalised units) so least squares steps away from it.
FAILED_RESIDUAL = 1.0
DEFAULT_POPSIZE = 15
DEFAULT_GENERATIONS = 200
#: Finite-difference step (in scaled units) for gradient-based local methods; ODE-solver noise swamps smaller ones.
GRADIENT_STEP = 1e-3

_ASK_TELL_KEYS = {
    "type", "log_to_screen", "sigma0", "max_iterations", "max_unchanged_iterations",
    "max_unchanged_iterations_threshold", "min_iterations", "max_evaluations", "population_size", "threshold",
    "absolute_tolerance", "relative_tolerance", "xtol", "population_convergence_tol", "flat_fitness_tol",
    "convergence_patience", "surrogate_convergence_tol", "algorithm_options",
}  # fmt: skip
_DE_STRATEGIES = {"rand_1": "rand1", "best_1": "best1", "current_to_best_1": "currenttobest1", "rand_2": "rand2",
                  "best_2": "best2"}  # fmt: skip
_DE_OPTION_KEYS = {"mutation_strategy", "crossover_method", "F", "CR", "dither"}
_SCIPY_DE_KEYS = {"type", "max_iterations", "maxiter", "population_size", "popsize", "strategy", "mutation",
                  "recombination", "seed", "atol", "tol", "polish", "init", "workers", "disp", "updating"}  # fmt: skip
_SCIPY_STRATEGIES = tuple(f"{base}{cross}" for base in ("best1", "best2", "rand1", "rand2", "randtobest1",
                                                         "currenttobest1") for cross in ("bin", "exp"))  # fmt: skip
_SCIPY_INITS = ("halton", "latinhypercube", "random", "sobol")
_MINIMIZE_KEYS = {"type", "method", "max_iterations", "maxiter", "tol", "options", "disp"}
_LEAST_SQUARES_KEYS = {"type", "method", "ftol", "xtol", "gtol", "max_nfev", "max_iterations", "diff_step", "loss",
                       "f_scale", "verbose"}  # fmt: skip
_LEAST_SQUARES_METHODS = ("trf", "dogbox")
_LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan")
_MINIMIZE_OPTION_KEYS = {"maxiter", "maxfev", "maxfun", "xatol", "fatol", "ftol", "gtol", "xtol", "eps", "disp",
                         "adaptive", "initial_tr_radius", "final_tr_radius"}  # fmt: skip

Bounds = Sequence[tuple[float | None, float | None]]
BatchCost = Callable[[np.ndarray], np.ndarray]
#: Rows of scaled points -> (costs, residual rows): what ``ScipyLeastSquares`` needs.
BatchResiduals = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
IterationHook = Callable[[int, int, np.ndarray, float], None]


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer type with its settings (as sent, validated)."""

    type: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def is_global(self) -> bool:
        return self.type in ("DifferentialEvolution", "ScipyDifferentialEvolution")


@dataclass
class Outcome:
    """What an optimizer run found (``x`` in scaled units)."""

    x: np.ndarray
    fun: float
    evaluations: int
    iterations: int
    success: bool
    message: str


def parse_optimizer(value: Any, field_path: str) -> OptimizerSpec:
    """Validate an optimizer config; ``None`` is ``ScipyMinimize`` (the DataFit default)."""
    if value is None:
        return OptimizerSpec("ScipyMinimize")
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise PipelineInputError(field_path, "an optimizer is an object with a 'type'")
    kind = value["type"]
    allowed = {
        "DifferentialEvolution": _ASK_TELL_KEYS,
        "ScipyDifferentialEvolution": _SCIPY_DE_KEYS,
        "ScipyMinimize": _MINIMIZE_KEYS,
        "ScipyLeastSquares": _LEAST_SQUARES_KEYS,
        "DummyOptimizer": {"type"},
    }.get(kind)
    if allowed is None:
        raise UnsupportedFeature(f"{field_path}.type", kind, OPTIMIZERS)
    unknown = sorted(k for k in set(value) - allowed if value[k] is not None)
    if unknown:
        raise UnsupportedFeature(f"{field_path}.{unknown[0]}", unknown[0], sorted(allowed - {"type"}))
    settings = {k: v for k, v in value.items() if k != "type" and v is not None}
    if kind == "DifferentialEvolution":
        _check_ask_tell(settings, field_path)
    elif kind == "ScipyMinimize":
        method = settings.get("method", "L-BFGS-B")
        if method not in LOCAL_METHODS:
            raise UnsupportedFeature(f"{field_path}.method", method, LOCAL_METHODS)
        options = settings.get("options") or {}
        bad = sorted(set(options) - _MINIMIZE_OPTION_KEYS)
        if bad:
            raise UnsupportedFeature(f"{field_path}.options.{bad[0]}", bad[0], _MINIMIZE_OPTION_KEYS)
    elif kind == "ScipyLeastSquares":
        for key, allowed_values in (("method", _LEAST_SQUARES_METHODS), ("loss", _LOSSES)):
            if key in settings and settings[key] not in allowed_values:
                raise UnsupportedFeature(f"{field_path}.{key}", settings[key], allowed_values)
    elif kind == "ScipyDifferentialEvolution":
        for key, allowed_values in (("strategy", _SCIPY_STRATEGIES), ("init", _SCIPY_INITS)):
            if key in settings and settings[key] not in allowed_values:
                raise UnsupportedFeature(f"{field_path}.{key}", settings[key], allowed_values)
    return OptimizerSpec(kind, settings)


def _check_ask_tell(settings: dict[str, Any], field_path: str) -> None:
    if "sigma0" in settings:
        raise UnsupportedFeature(f"{field_path}.sigma0", settings["sigma0"], ["unset (DifferentialEvolution)"])
    options = settings.get("algorithm_options") or {}
    unknown = sorted(k for k, v in options.items() if v is not None and k not in _DE_OPTION_KEYS)
    if unknown:
        raise UnsupportedFeature(f"{field_path}.algorithm_options.{unknown[0]}", unknown[0], _DE_OPTION_KEYS)
    strategy = options.get("mutation_strategy")
    if strategy is not None and strategy not in _DE_STRATEGIES:
        raise UnsupportedFeature(f"{field_path}.algorithm_options.mutation_strategy", strategy, _DE_STRATEGIES)
    crossover = options.get("crossover_method")
    if crossover is not None and crossover not in ("binomial", "exponential"):
        raise UnsupportedFeature(
            f"{field_path}.algorithm_options.crossover_method", crossover, ["binomial", "exponential"]
        )


class _Stop(Exception):
    """Raised inside the objective when the evaluation or time budget is spent."""


class _Tracker:
    """Counts evaluations, keeps the best point, enforces the budget and reports each iteration."""

    def __init__(
        self,
        cost: BatchCost,
        max_evaluations: int,
        max_seconds: float,
        hook: IterationHook,
        residuals: BatchResiduals | None = None,
    ) -> None:
        self.cost, self.max_evaluations, self.hook, self.residuals = cost, max_evaluations, hook, residuals
        self.deadline = time.monotonic() + max_seconds
        self.evaluations, self.iterations = 0, 0
        self.best_x: np.ndarray | None = None
        self.best_fun = math.inf
        self.stopped = ""

    def batch(self, xs: np.ndarray) -> np.ndarray:
        self._check_budget()
        values = np.asarray(self.cost(np.atleast_2d(xs)), dtype=float)
        self._record(np.atleast_2d(xs), values)
        return values

    def residual_batch(self, xs: np.ndarray) -> np.ndarray:
        """Residual rows for ``xs`` (finite: a failed solve's residuals are large, not NaN)."""
        assert self.residuals is not None
        self._check_budget()
        _, rows = self.residuals(np.atleast_2d(xs))
        rows = np.nan_to_num(np.asarray(rows, dtype=float), nan=FAILED_RESIDUAL, posinf=FAILED_RESIDUAL,
                             neginf=-FAILED_RESIDUAL)  # fmt: skip
        self._record(np.atleast_2d(xs), np.sum(rows**2, axis=1))  # least squares' own objective picks the best
        return rows

    def _check_budget(self) -> None:
        if self.evaluations >= self.max_evaluations:
            self.stopped = f"evaluation budget of {self.max_evaluations} spent"
            raise _Stop
        if time.monotonic() > self.deadline:
            self.stopped = "time budget spent"
            raise _Stop

    def _record(self, xs: np.ndarray, values: np.ndarray) -> None:
        self.evaluations += len(values)
        best = int(np.argmin(values))
        if values[best] < self.best_fun:
            self.best_fun, self.best_x = float(values[best]), np.array(xs[best], dtype=float)

    def single(self, x: np.ndarray) -> float:
        return float(self.batch(np.asarray(x, dtype=float)[None, :])[0])

    def iteration(self) -> bool:
        """Record an iteration; True once the budget is spent (so the optimizer stops)."""
        self.iterations += 1
        if self.best_x is not None:
            self.hook(self.iterations, self.evaluations, self.best_x, self.best_fun)
        if self.evaluations >= self.max_evaluations:
            self.stopped = f"evaluation budget of {self.max_evaluations} spent"
        elif time.monotonic() > self.deadline:
            self.stopped = "time budget spent"
        return bool(self.stopped)


def run_optimizer(
    spec: OptimizerSpec,
    cost: BatchCost,
    bounds: Bounds,
    x0: np.ndarray,
    *,
    seed: int,
    on_iteration: IterationHook,
    max_seconds: float = MAX_SECONDS,
    residuals: BatchResiduals | None = None,
) -> Outcome:
    """Minimise ``cost`` (rows of scaled points -> costs) from ``x0`` within ``bounds`` (``None`` = unbounded).

    The global methods need finite bounds (``parse_fit`` checks that); ``ScipyLeastSquares`` needs
    ``residuals`` and minimises their sum of squares, which also picks its best point (and is its ``fun``).
    """
    settings = spec.settings
    max_evaluations = min(int(settings.get("max_evaluations", settings.get("max_nfev", MAX_EVALUATIONS))),
                          MAX_EVALUATIONS)  # fmt: skip
    tracker = _Tracker(cost, max_evaluations, min(max_seconds, MAX_SECONDS), on_iteration, residuals)
    if spec.type == "DummyOptimizer":
        fun = tracker.single(x0)
        tracker.iteration()
        return Outcome(np.array(x0, dtype=float), fun, 1, 1, True, "initial guess evaluated")
    try:
        if spec.type == "ScipyMinimize":
            success, message = _minimize(settings, tracker, bounds, x0)
        elif spec.type == "ScipyLeastSquares":
            success, message = _least_squares(settings, tracker, bounds, x0)
        else:
            success, message = _differential_evolution(spec, tracker, bounds, x0, seed)
    except _Stop:
        success, message = False, tracker.stopped
    if tracker.stopped:
        success, message = False, f"stopped early: {tracker.stopped}"
    if tracker.best_x is None:
        raise PipelineInputError("optimizer", "the optimizer evaluated no point")
    return Outcome(tracker.best_x, tracker.best_fun, tracker.evaluations, tracker.iterations, success, message)


def _minimize(settings: dict[str, Any], tracker: _Tracker, bounds: Bounds, x0: np.ndarray) -> tuple[bool, str]:
    method = settings.get("method", "L-BFGS-B")
    options = dict(settings.get("options") or {})
    maxiter = settings.get("max_iterations", settings.get("maxiter"))
    if maxiter is not None:
        options["maxiter"] = int(maxiter)
    if method in ("L-BFGS-B", "TNC", "SLSQP"):
        options.setdefault("eps", GRADIENT_STEP)
    if method in ("Nelder-Mead", "Powell"):
        options["maxfev"] = min(int(options.get("maxfev", tracker.max_evaluations)), tracker.max_evaluations)
    result = optimize.minimize(
        tracker.single,
        np.asarray(x0, dtype=float),
        method=method,
        bounds=optimize.Bounds(
            [-np.inf if lo is None else lo for lo, _ in bounds], [np.inf if hi is None else hi for _, hi in bounds]
        ),
        tol=settings.get("tol"),
        options=options,
        callback=lambda *args, **kwargs: tracker.iteration(),
    )
    return bool(result.success), str(result.message)


def _least_squares(settings: dict[str, Any], tracker: _Tracker, bounds: Bounds, x0: np.ndarray) -> tuple[bool, str]:
    """scipy ``least_squares`` with a forward-difference Jacobian whose points are solved in one batch."""
    if tracker.residuals is None:
        raise PipelineInputError("optimizer", "ScipyLeastSquares needs objectives that give residuals")
    lows = np.array([-np.inf if lo is None else lo for lo, _ in bounds], float)
    highs = np.array([np.inf if hi is None else hi for _, hi in bounds], float)
    step = float(settings.get("diff_step", GRADIENT_STEP))
    last: dict[str, np.ndarray] = {}

    def fun(x: np.ndarray) -> np.ndarray:
        rows = tracker.residual_batch(x[None, :])[0]
        last["x"], last["r"] = np.array(x), rows
        return rows

    def jac(x: np.ndarray) -> np.ndarray:
        base = last["r"] if "x" in last and np.array_equal(last["x"], x) else fun(x)
        steps = np.where(x + step <= highs, step, -step)
        points = x[None, :] + np.diag(steps)
        rows = tracker.residual_batch(points)
        tracker.iteration()
        return ((rows - base[None, :]) / steps[:, None]).T

    result = optimize.least_squares(
        fun,
        np.clip(np.asarray(x0, dtype=float), lows, highs),
        jac=jac,
        bounds=(lows, highs),
        method=settings.get("method", "trf"),
        ftol=settings.get("ftol", 1e-8),
        xtol=settings.get("xtol", 1e-8),
        gtol=settings.get("gtol", 1e-8),
        loss=settings.get("loss", "linear"),
        f_scale=settings.get("f_scale", 1.0),
        max_nfev=settings.get("max_iterations", settings.get("max_nfev")),
    )
    return bool(result.success), str(result.message)


def _differential_evolution(
    spec: OptimizerSpec, tracker: _Tracker, bounds: Bounds, x0: np.ndarray, seed: int
) -> tuple[bool, str]:
    if spec.type == "DifferentialEvolution":
        options, stop = _ionworks_de_options(spec.settings, len(bounds), seed), _ConvergenceRule(spec.settings)
    else:
        options, stop = _scipy_de_options(spec.settings, seed), None
    converged = [False]

    def callback(intermediate_result: optimize.OptimizeResult) -> bool:
        if tracker.iteration():
            return True
        energies = intermediate_result.population_energies
        converged[0] = stop is not None and stop.done(tracker.iterations, energies, tracker.best_fun)
        return converged[0]

    lows, highs = np.array([lo for lo, _ in bounds], float), np.array([hi for _, hi in bounds], float)
    result = optimize.differential_evolution(
        lambda xs: tracker.batch(np.asarray(xs).T),
        list(zip(lows, highs)),
        x0=np.clip(x0, lows, highs),
        vectorized=True,
        updating="deferred",
        callback=callback,
        **options,
    )
    if stop is None:
        return bool(result.success), str(result.message)
    return converged[0], stop.reason if converged[0] else "maximum number of generations reached"


def _ionworks_de_options(settings: dict[str, Any], n: int, seed: int) -> dict[str, Any]:
    """scipy settings for ``DifferentialEvolution``; stopping is left to ``_ConvergenceRule``."""
    algorithm = settings.get("algorithm_options") or {}
    population = settings.get("population_size")
    strategy = _DE_STRATEGIES.get(algorithm.get("mutation_strategy"), "best1")
    return {
        "popsize": max(2, math.ceil(population / n)) if population else DEFAULT_POPSIZE,
        "maxiter": int(settings.get("max_iterations") or DEFAULT_GENERATIONS),
        "strategy": strategy + ("exp" if algorithm.get("crossover_method") == "exponential" else "bin"),
        "mutation": algorithm.get("F", (0.5, 1.0) if algorithm.get("dither", True) else 0.5),
        "recombination": algorithm.get("CR", 0.7),
        "tol": 0.0,
        "atol": 0.0,
        "polish": False,
        "rng": seed,
    }


def _scipy_de_options(settings: dict[str, Any], seed: int) -> dict[str, Any]:
    """scipy settings for ``ScipyDifferentialEvolution`` (its own names, or the schema's aliases)."""
    mutation = settings.get("mutation", (0.5, 1.0))
    return {
        "popsize": int(settings.get("population_size", settings.get("popsize", DEFAULT_POPSIZE))),
        "maxiter": int(settings.get("max_iterations", settings.get("maxiter", DEFAULT_GENERATIONS))),
        "strategy": settings.get("strategy", "best1bin"),
        "mutation": tuple(mutation) if isinstance(mutation, list) else mutation,
        "recombination": settings.get("recombination", 0.7),
        "tol": settings.get("tol", 0.01),
        "atol": settings.get("atol", 0.0),
        "init": settings.get("init", "latinhypercube"),
        "polish": bool(settings.get("polish", False)),
        "rng": settings.get("seed", seed),
    }


class _ConvergenceRule:
    """When the Ionworks-style ``DifferentialEvolution`` stops (checked after every generation).

    The population has converged when the spread of its costs is within ``population_convergence_tol`` of
    their mean for ``convergence_patience`` generations in a row. It also stops on ``threshold``,
    ``flat_fitness_tol`` and, when set, ``max_unchanged_iterations``; never before ``min_iterations``.
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        self.min_iterations = int(settings.get("min_iterations", 1))
        self.population_tol = float(settings.get("population_convergence_tol", 5e-3))
        self.patience = max(1, int(settings.get("convergence_patience", 3)))
        self.threshold = settings.get("threshold")
        self.flat_tol = settings.get("flat_fitness_tol")
        self.max_unchanged = settings.get("max_unchanged_iterations")
        self.abs_tol = float(
            settings.get("absolute_tolerance", settings.get("max_unchanged_iterations_threshold", 1e-5))
        )
        self.rel_tol = float(settings.get("relative_tolerance", 1e-2))
        self.streak, self.unchanged, self.reference = 0, 0, math.inf
        self.reason = ""

    def done(self, iteration: int, energies: np.ndarray, best: float) -> bool:
        energies = np.asarray(energies, dtype=float)
        spread = float(np.std(energies))
        self.streak = self.streak + 1 if spread <= self.population_tol * abs(float(np.mean(energies))) else 0
        if self.reference - best > max(self.abs_tol, self.rel_tol * abs(best)):
            self.reference, self.unchanged = best, 0
        else:
            self.unchanged += 1
        if iteration < self.min_iterations:
            return False
        if self.threshold is not None and best <= self.threshold:
            self.reason = f"cost reached the threshold {self.threshold}"
        elif self.streak >= self.patience:
            self.reason = "population converged"
        elif self.flat_tol is not None and np.mean(np.abs(energies - np.median(energies)) <= self.flat_tol) >= 0.5:
            self.reason = "fitness is flat across the population"
        elif self.max_unchanged is not None and self.unchanged >= int(self.max_unchanged):
            self.reason = f"no improvement for {self.max_unchanged} generations"
        return bool(self.reason)
