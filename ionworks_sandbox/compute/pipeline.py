"""Run an Ionworks pipeline's elements in order with PyBaMM; parameters accumulate from element to element.

Supported elements: ``entry`` (``values``, or a ``PiecewiseInterpolation1D`` electrode OCP), ``data_fit``,
``validation`` and ``calculation`` (``ElectrodeCapacity``), with the legacy labels (``"Data Fit"``, ...).
Anything else raises ``UnsupportedFeature`` naming the field and what is supported. Parameters a model needs
that the pipeline does not give come from PyBaMM's Chen2020 set and are listed in ``defaults``.

Example:
    >>> check_pipeline(body["elements"])  # fast: raises UnsupportedFeature / PipelineInputError
    >>> out = run_pipeline(body["elements"], lambda mid: pl.read_parquet(paths[mid]), print)
    >>> out["element_results"]["fit"]["parameter_values"]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import polars as pl
from ionworks_schema import LEGACY_ELEMENT_TYPE_ALIASES

from .calculations import CalculationPlan, parse_calculation, run_calculation
from .errors import PipelineInputError, UnsupportedFeature
from .fit import FitPlan, parse_fit, run_fit
from .interpolants import ENTRY_NAME, parse_piecewise_entry
from .models import ENGINE_SET, PARAMETER_SET, model_parameter_names, usable_parameters
from .objectives import ObjectiveSpec
from .validation import ValidationPlan, parse_validation, run_validation

__all__ = ["PipelineInputError", "UnsupportedFeature", "check_pipeline", "run_pipeline", "ELEMENT_TYPES"]

ELEMENT_TYPES = ("calculation", "data_fit", "entry", "validation")
_ENTRY_KEYS = {"element_type", "values", "source", "keep", "mapping", "provenance"}
_ENTRY_UNSUPPORTED = ("pipeline_id", "cell_spec_id", "path", "name")

Plan = Mapping[str, Any] | FitPlan | ValidationPlan | CalculationPlan
Report = Callable[[dict[str, Any]], None]


def check_pipeline(elements: dict[str, dict]) -> None:
    """Validate a pipeline's elements (wire format) up front, without loading data or building models.

    Example:
        >>> check_pipeline({"q": {"element_type": "calculation", "type": "ElectrodeCapacity", "electrode": "negative"}})
    """
    _plan(elements)


def run_pipeline(
    elements: dict[str, dict], load_measurement: Callable[[str], pl.DataFrame], report: Report
) -> dict[str, Any]:
    """Run the elements in order; ``report`` gets ``{"element", "status", "progress"[, "error"]}`` as work advances.

    Returns ``{"result": {"parameter_values"}, "element_results", "element_metadata", "defaults"}`` (JSON-safe:
    non-finite numbers become ``None``).

    Example:
        >>> out = run_pipeline(elements, loader, lambda update: None)
    """
    plans = _plan(elements)
    values: dict[str, Any] = {}
    results: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    filled: set[str] = set()
    for name, kind, plan in plans:
        report({"element": name, "status": "running", "progress": {"best_cost": None, "evaluations": 0}})
        final: dict[str, Any] = {"best_cost": None, "evaluations": 0}

        def progress(update: dict[str, Any], element: str = name, final: dict[str, Any] = final) -> None:
            final.update(update)
            report({"element": element, "status": "running", "progress": _clean(update)})

        try:
            result, meta, new_values = _run_element(kind, plan, values, load_measurement, progress)
        except Exception as exc:
            report({"element": name, "status": "failed", "progress": _clean(final), "error": str(exc)})
            raise
        if kind in ("data_fit", "validation"):
            fitted = list(new_values)
            missing = _filled_from_defaults(plan.objectives, values, fitted)
            meta["defaults"] = {"parameter_set": PARAMETER_SET, "filled": missing}
            filled.update(missing)
        elif kind == "calculation":
            filled.update(meta["defaults"]["filled"])
        values.update(new_values)
        results[name], metadata[name] = result, meta
        report({"element": name, "status": "completed", "progress": _clean(final)})
    return _clean(
        {
            "result": {"parameter_values": values},
            "element_results": results,
            "element_metadata": metadata,
            "defaults": {"parameter_set": PARAMETER_SET, "filled": sorted(filled)},
        }
    )


def _run_element(
    kind: str, plan: Plan, values: dict[str, Any], loader: Callable, progress: Callable[[dict[str, Any]], None]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """One element: ``(raw result, metadata, parameter values it adds)``."""
    if kind == "entry":
        entry = dict(plan)
        return ({"type": "PassthroughResult", "parameter_values": entry},
                {"element_type": "entry", "parameter_values": entry}, entry)  # fmt: skip
    if kind == "data_fit":
        result, meta = run_fit(plan, loader, values, progress)
        return result, meta, dict(result["parameter_values"])
    if kind == "validation":
        result, meta = run_validation(plan, loader, values)
        return result, meta, {}
    new_values, meta = run_calculation(plan, values)
    return {"type": "PassthroughResult", "parameter_values": new_values}, meta, new_values


def _filled_from_defaults(objectives: list[ObjectiveSpec], values: Mapping[str, Any], fitted: list[str]) -> list[str]:
    given = set(usable_parameters(values)) | set(fitted) | ENGINE_SET
    needed: set[str] = set()
    for spec in objectives:
        needed |= model_parameter_names(spec.model) - set(spec.overrides)
    return sorted(needed - given)


def _plan(elements: Any) -> list[tuple[str, str, Plan]]:
    if not isinstance(elements, dict) or not elements:
        raise PipelineInputError("elements", "a pipeline needs a non-empty object of named elements")
    known: dict[str, Any] = {}
    references: dict[str, Mapping[str, Any]] = {}
    plans: list[tuple[str, str, Plan]] = []
    for name, config in elements.items():
        field_path = f"elements.{name}"
        if not isinstance(config, dict):
            raise PipelineInputError(field_path, "an element is an object with an 'element_type'")
        kind = _element_type(config.get("element_type"), f"{field_path}.element_type")
        if kind == "entry":
            plan: Plan = _parse_entry(config, field_path, known)
            known.update(plan)
            references[name] = plan
        elif kind == "data_fit":
            plan = parse_fit(name, config, field_path, known, references)
        elif kind == "validation":
            plan = parse_validation(name, config, field_path, known, references)
        else:
            plan = parse_calculation(name, config, field_path)
        plans.append((name, kind, plan))
    return plans


def _element_type(label: Any, field_path: str) -> str:
    if not isinstance(label, str):
        raise PipelineInputError(field_path, "every element needs an 'element_type'")
    kind = LEGACY_ELEMENT_TYPE_ALIASES.get(label, label)
    if kind not in ELEMENT_TYPES:
        raise UnsupportedFeature(field_path, label, ELEMENT_TYPES)
    return kind


def _parse_entry(config: Mapping[str, Any], field_path: str, known: Mapping[str, Any]) -> dict[str, Any]:
    if config.get("name") == ENTRY_NAME:
        return parse_piecewise_entry(config, field_path, known)
    for key in _ENTRY_UNSUPPORTED:
        if config.get(key) is not None:
            raise UnsupportedFeature(f"{field_path}.{key}", key, ["values"])
    unknown = sorted(set(config) - _ENTRY_KEYS)
    if unknown:
        raise PipelineInputError(f"{field_path}.{unknown[0]}", f"unknown entry key {unknown[0]!r}")
    for key in ("keep", "mapping"):
        if config.get(key) is not None:
            raise UnsupportedFeature(f"{field_path}.{key}", key, ["values"])
    values = config.get("values")
    if not isinstance(values, dict):
        raise PipelineInputError(f"{field_path}.values", "an entry's values map parameter names to values")
    nulls = sorted(name for name, value in values.items() if value is None)
    if nulls:
        raise PipelineInputError(f"{field_path}.values.{nulls[0]}", "a parameter value cannot be null")
    return dict(values)


def _clean(value: Any) -> Any:
    """JSON-safe copy: numpy scalars and arrays become Python values, NaN and infinities become ``None``."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value
