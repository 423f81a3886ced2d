"""Optimizer configs (``ionworks_schema.optimizers``) as the sandbox accepts them: each type's keys and values
checked, so an unsupported setting is refused naming its field, not ignored.

Example:
    >>> parse_optimizer({"type": "ScipyMinimize", "method": "Powell"}, "elements.fit.optimizer").is_global
    False
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import PipelineInputError, UnsupportedFeature

OPTIMIZERS = ("DifferentialEvolution", "DummyOptimizer", "ScipyDifferentialEvolution", "ScipyLeastSquares",
              "ScipyMinimize")  # fmt: skip
LOCAL_METHODS = ("COBYQA", "L-BFGS-B", "Nelder-Mead", "Powell", "SLSQP", "TNC")
_ASK_TELL_KEYS = {
    "type", "log_to_screen", "sigma0", "max_iterations", "max_unchanged_iterations",
    "max_unchanged_iterations_threshold", "min_iterations", "max_evaluations", "population_size", "threshold",
    "absolute_tolerance", "relative_tolerance", "xtol", "population_convergence_tol", "flat_fitness_tol",
    "convergence_patience", "surrogate_convergence_tol", "algorithm_options",
}  # fmt: skip
DE_STRATEGIES = {"rand_1": "rand1", "best_1": "best1", "current_to_best_1": "currenttobest1", "rand_2": "rand2",
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


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer type with its settings (as sent, validated)."""

    type: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def is_global(self) -> bool:
        return self.type in ("DifferentialEvolution", "ScipyDifferentialEvolution")


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
    if strategy is not None and strategy not in DE_STRATEGIES:
        raise UnsupportedFeature(f"{field_path}.algorithm_options.mutation_strategy", strategy, DE_STRATEGIES)
    crossover = options.get("crossover_method")
    if crossover is not None and crossover not in ("binomial", "exponential"):
        raise UnsupportedFeature(
            f"{field_path}.algorithm_options.crossover_method", crossover, ["binomial", "exponential"]
        )
