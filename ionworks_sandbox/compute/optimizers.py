"""Optimizers (``ionworks_schema.optimizers``) run with scipy over scaled parameters.

``DifferentialEvolution`` and ``ScipyDifferentialEvolution`` evaluate a whole generation in one batched call;
``ScipyMinimize`` runs a local method; ``ScipyLeastSquares`` runs scipy's trust-region least squares on the
residual vector, its finite-difference Jacobian solved as one batch; ``DummyOptimizer`` evaluates the initial
guess. Every run is capped at
``MAX_EVALUATIONS`` evaluations and ``MAX_SECONDS`` so sandbox fits stay short.

Example:
    >>> spec = parse_optimizer({"type": "DifferentialEvolution"}, "elements.fit.optimizer")  # see optimizer_config
    >>> outcome = run_optimizer(spec, batch_cost, [(-14.0, -13.0)], np.array([-13.7]), seed=0, on_iteration=print)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize

from .errors import PipelineInputError
from .optimizer_config import DE_STRATEGIES, OptimizerSpec

MAX_EVALUATIONS = 5000
MAX_SECONDS = 300.0
#: Residual given to every point of a failed solve (normalised units) so least squares steps away from it.
FAILED_RESIDUAL = 1.0
DEFAULT_POPSIZE = 15
DEFAULT_GENERATIONS = 200
#: Finite-difference step (in scaled units) for gradient-based local methods; ODE-solver noise swamps smaller ones.
GRADIENT_STEP = 1e-3

Bounds = Sequence[tuple[float | None, float | None]]
BatchCost = Callable[[np.ndarray], np.ndarray]
#: Rows of scaled points -> (costs, residual rows): what ``ScipyLeastSquares`` needs.
BatchResiduals = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
IterationHook = Callable[[int, int, np.ndarray, float], None]


@dataclass
class Outcome:
    """What an optimizer run found (``x`` in scaled units)."""

    x: np.ndarray
    fun: float
    evaluations: int
    iterations: int
    success: bool
    message: str


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
    strategy = DE_STRATEGIES.get(algorithm.get("mutation_strategy"), "best1")
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
