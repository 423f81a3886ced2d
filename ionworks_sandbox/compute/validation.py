"""The ``validation`` element: simulate each objective with the accumulated parameters and score it.

Summary statistics are in volts (``"identity"`` normalisation) unless a statistic names its own.

Example:
    >>> plan = parse_validation("val", config, "elements.val", known, references)
    >>> result, metadata = run_validation(plan, loader, known)
    >>> result["summary_stats"]["1C"]["RMSE"]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .costs import Cost, parse_summary_stats, summary
from .errors import PipelineInputError
from .objectives import ObjectiveRun, ObjectiveSpec, parse_objectives, plots

_KEYS = {"objectives", "summary_stats", "element_type"}


@dataclass(frozen=True)
class ValidationPlan:
    name: str
    field: str
    objectives: list[ObjectiveSpec]
    stats: list[Cost]
    assumed: dict[str, Any] = field(default_factory=dict)


def parse_validation(
    name: str,
    config: Mapping[str, Any],
    field_path: str,
    known: Mapping[str, Any],
    references: Mapping[str, Mapping[str, Any]],
) -> ValidationPlan:
    """Validate a ``validation`` element (no data loading, no model building)."""
    unknown = sorted(set(config) - _KEYS)
    if unknown:
        raise PipelineInputError(f"{field_path}.{unknown[0]}", f"unknown validation key {unknown[0]!r}")
    assumed: dict[str, Any] = {}
    objectives = parse_objectives(config.get("objectives"), f"{field_path}.objectives", known, references, assumed)
    stats = parse_summary_stats(config.get("summary_stats"), f"{field_path}.summary_stats")
    return ValidationPlan(name, field_path, objectives, stats, assumed)


def run_validation(
    plan: ValidationPlan, loader: Callable, known: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Simulate and score; returns the ``ValidationResult`` dict and the element's metadata (traces)."""
    stats, results, traces, failed, described = {}, {}, {}, {}, {}
    for spec in plan.objectives:
        run = ObjectiveRun.load(spec, loader, known, ())
        voltage = run.voltages([{}])[0]
        described[spec.name] = run.describe()
        stats[spec.name] = summary(plan.stats, voltage, run.series.voltage)
        if any(value is None for value in stats[spec.name].values()):
            failed[spec.name] = f"the {spec.model.type} model could not be solved over the data"
        results[spec.name] = {**described[spec.name], "summary_stats": stats[spec.name]}
        traces[spec.name] = run.trace(voltage)
    result = {
        "type": "ValidationResult",
        "parameter_values": {},
        "validation_results": results,
        "summary_stats": stats,
        "failed_objectives": failed,
    }
    metadata = {
        "element_type": "validation",
        "objectives": described,
        "summary_stats": stats,
        "assumed": plan.assumed,
        "validation_results": traces,
        "validation_plot_config": {"objectives": {s.name: {"plot_count": 2, "type": s.type} for s in plan.objectives}},
        "plots": {name: plots(trace, label="Model") for name, trace in traces.items()},
    }
    return result, metadata
