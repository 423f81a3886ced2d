"""Cost functions (``ionworks_schema.costs``): RMSE, MAE, MSE, SSE and Max, with Ionworks' normalisation.

A fit's cost defaults to the schema's documented normalisation (``"mean"``: residuals divided by the mean of
the data), so it is dimensionless; validation summary statistics use ``"identity"`` unless one is given, so
they are in volts. A failed solve costs ``FAILED_COST``.

Example:
    >>> cost = parse_cost({"type": "RMSE"}, "elements.fit.cost")
    >>> cost.evaluate(np.array([[4.0, 3.9]]), np.array([4.0, 3.8]))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import PipelineInputError, UnsupportedFeature

COSTS = ("MAE", "MSE", "Max", "RMSE", "SSE")
NORMALIZATIONS = ("identity", "mean", "mean_squares", "range", "root_mean_squares", "sum_squares")
DEFAULT_SUMMARY_STATS = ("RMSE", "MAE", "Max")
FAILED_COST = 1.0e10
_COST_KEYS = {
    "type",
    "normalization",
    "nan_values",
    "objective_weights",
    "variable_weights",
    "calculation_structure",
    "objective_names",
}


@dataclass(frozen=True)
class Cost:
    """One cost function with its normalisation and per-objective weights."""

    type: str = "RMSE"
    normalization: str | float = "mean"
    objective_weights: Mapping[str, float] = field(default_factory=dict)
    voltage_weight: float = 1.0
    objectives: frozenset[str] | None = None

    def weight(self, objective: str) -> float:
        if self.objectives is not None and objective not in self.objectives:
            return 0.0
        return float(self.objective_weights.get(objective, 1.0)) * self.voltage_weight

    def residuals(self, model: np.ndarray, data: np.ndarray) -> np.ndarray:
        """Normalised residuals ``(model - data) / scale`` per row (NaN where a solve failed)."""
        return (np.atleast_2d(model) - data) / _scale(self.normalization, data)

    def evaluate(self, model: np.ndarray, data: np.ndarray) -> np.ndarray:
        """Cost of each row of ``model`` (shape ``(S, n)``) against ``data`` (``n``); failed rows cost a lot."""
        model = np.atleast_2d(model)
        residual = (model - data) / _scale(self.normalization, data)
        with np.errstate(invalid="ignore", over="ignore"):
            if self.type == "RMSE":
                value = np.sqrt(np.mean(residual**2, axis=1))
            elif self.type == "MSE":
                value = np.mean(residual**2, axis=1)
            elif self.type == "SSE":
                value = np.sum(residual**2, axis=1)
            elif self.type == "MAE":
                value = np.mean(np.abs(residual), axis=1)
            else:
                value = np.max(np.abs(residual), axis=1)
        return np.where(np.isfinite(value), value, FAILED_COST)

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "normalization": self.normalization}


def _scale(normalization: str | float, data: np.ndarray) -> float:
    if not isinstance(normalization, str):
        scale = float(normalization)
    elif normalization == "identity":
        scale = 1.0
    elif normalization == "mean":
        scale = float(np.mean(data))
    elif normalization == "range":
        scale = float(np.ptp(data))
    elif normalization == "sum_squares":
        scale = float(np.sum(data**2))
    elif normalization == "mean_squares":
        scale = float(np.mean(data**2))
    else:
        scale = float(np.sqrt(np.mean(data**2)))
    return scale if scale != 0.0 and np.isfinite(scale) else 1.0


def parse_cost(value: Any, field_path: str, default_normalization: str = "mean") -> Cost:
    """Read a cost as sent (``{"type": "RMSE", ...}`` or the bare name ``"RMSE"``); ``None`` means RMSE."""
    if value is None:
        return Cost(normalization=default_normalization)
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict) or "type" not in value:
        raise PipelineInputError(field_path, "a cost is an object with a 'type' (e.g. {'type': 'RMSE'})")
    if value["type"] not in COSTS:
        raise UnsupportedFeature(f"{field_path}.type", value["type"], COSTS)
    unknown = sorted(set(value) - _COST_KEYS)
    if unknown:
        raise UnsupportedFeature(f"{field_path}.{unknown[0]}", unknown[0], sorted(_COST_KEYS))
    normalization = value.get("normalization")
    if normalization is None:
        normalization = default_normalization
    elif isinstance(normalization, str) and normalization not in NORMALIZATIONS:
        raise UnsupportedFeature(f"{field_path}.normalization", normalization, NORMALIZATIONS)
    elif not isinstance(normalization, (str, int, float)) or isinstance(normalization, bool):
        raise PipelineInputError(f"{field_path}.normalization", "normalization is a name or a number")
    variable_weights = value.get("variable_weights") or {}
    other = sorted(set(variable_weights) - {"Voltage [V]"})
    if other:
        raise UnsupportedFeature(f"{field_path}.variable_weights.{other[0]}", other[0], ["Voltage [V]"])
    return Cost(
        type=value["type"],
        normalization=normalization,
        objective_weights=_weights(value.get("objective_weights"), f"{field_path}.objective_weights"),
        voltage_weight=float(variable_weights.get("Voltage [V]", 1.0)),
        objectives=_scoped_objectives(value, field_path),
    )


def _weights(weights: Any, field_path: str) -> dict[str, float]:
    if weights is None:
        return {}
    if not isinstance(weights, dict) or not all(isinstance(w, (int, float)) for w in weights.values()):
        raise PipelineInputError(field_path, "weights map objective names to numbers")
    return {str(k): float(w) for k, w in weights.items()}


def _scoped_objectives(value: Mapping[str, Any], field_path: str) -> frozenset[str] | None:
    structure = value.get("calculation_structure")
    if structure is not None:
        for name, variables in structure.items():
            if variables is not None and set(variables) - {"Voltage [V]"}:
                raise UnsupportedFeature(f"{field_path}.calculation_structure.{name}", variables, ["Voltage [V]"])
        return frozenset(name for name, variables in structure.items() if variables is None or variables)
    names = value.get("objective_names")
    return frozenset(names) if names is not None else None


def parse_summary_stats(value: Any, field_path: str) -> list[Cost]:
    """Validation summary statistics; unset means RMSE, MAE and Max, in volts."""
    if value is None:
        return [Cost(type=name, normalization="identity") for name in DEFAULT_SUMMARY_STATS]
    if not isinstance(value, list):
        raise PipelineInputError(field_path, "summary_stats is a list of costs")
    return [parse_cost(stat, f"{field_path}.{i}", default_normalization="identity") for i, stat in enumerate(value)]


def summary(stats: list[Cost], model: np.ndarray, data: np.ndarray) -> dict[str, float | None]:
    """``{stat type: value}`` for one objective; a failed solve gives ``None``."""
    out: dict[str, float | None] = {}
    for stat in stats:
        value = float(stat.evaluate(model, data)[0])
        out[stat.type] = None if value >= FAILED_COST else value
    return out
