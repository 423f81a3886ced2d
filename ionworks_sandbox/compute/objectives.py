"""Objectives (``CurrentDriven``, ``Pulse``): the measured current drives a model, voltages are compared.

Example:
    >>> specs = parse_objectives({"1C": {"type": "CurrentDriven", "data": "db:m1",
    ...                                  "options": {"model": {"type": "SPMe"}}}}, "elements.fit.objectives", {}, {})
    >>> run = ObjectiveRun(specs[0], load_series(specs[0].data, loader), known={}, fitted=names)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .costs import Cost, parse_cost
from .data import DataSpec, MeasurementLoader, Series, load_series, parse_data
from .errors import PipelineInputError, UnsupportedFeature
from .models import (
    ModelSpec,
    PreparedModel,
    RebuildingModel,
    fittable_names,
    parse_model,
    prepare_model,
    usable_parameters,
)  # fmt: skip

OBJECTIVE_TYPES = ("CurrentDriven", "Pulse")
MAX_TRACE_POINTS = 500
#: Assumed when an objective config names no type (configs sent without client-side validation).
DEFAULT_OBJECTIVE_TYPE = "CurrentDriven"
#: Assumed when neither the objective nor an earlier entry names a model.
DEFAULT_MODEL = {"type": "SPMe"}
_OBJECTIVE_KEYS = {"type", "options", "data", "cost", "parameters", "callbacks", "constraints", "penalties"}
_OPTION_KEYS = {
    "model", "parameterized_model_id", "independent variable", "objective variables", "simulation_kwargs",
    "interpolant_atol", "interpolant_rtol", "interpolant_lossless",
}  # fmt: skip


@dataclass(frozen=True)
class ObjectiveSpec:
    """A parsed objective: what to simulate, against which data, with which cost and overrides."""

    name: str
    field: str
    type: str
    model: ModelSpec
    data: DataSpec
    cost: Cost | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    initial_soc: float | str | None = None


def parse_objectives(
    objectives: Any,
    field_path: str,
    known: Mapping[str, Any],
    references: Mapping[str, Mapping[str, Any]],
    assumed: dict[str, Any],
) -> list[ObjectiveSpec]:
    """Validate every objective of a fit or validation element; defaults taken are written into ``assumed``."""
    if not isinstance(objectives, dict) or not objectives:
        raise PipelineInputError(field_path, "objectives must be a non-empty object of named objectives")
    return [
        _parse_objective(name, config, f"{field_path}.{name}", known, references, assumed)
        for name, config in objectives.items()
    ]


def _parse_objective(
    name: str,
    config: Any,
    field_path: str,
    known: Mapping[str, Any],
    references: Mapping[str, Mapping[str, Any]],
    assumed: dict[str, Any],
) -> ObjectiveSpec:
    if not isinstance(config, dict):
        raise PipelineInputError(field_path, "an objective is an object with 'type', 'data' and 'options'")
    config = dict(config)
    if "objective" in config:  # legacy discriminator
        config.setdefault("type", config.pop("objective"))
    options = dict(config.get("options") or {})
    if "model" in config:  # legacy top-level model
        options.setdefault("model", config.pop("model"))
    kind = config.get("type")
    if kind is None:
        kind = assumed[f"{field_path}.type"] = DEFAULT_OBJECTIVE_TYPE
    if kind not in OBJECTIVE_TYPES:
        raise UnsupportedFeature(f"{field_path}.type", kind, OBJECTIVE_TYPES)
    unknown = sorted(k for k in set(config) - _OBJECTIVE_KEYS if config[k] is not None)
    if unknown:
        raise PipelineInputError(f"{field_path}.{unknown[0]}", f"unknown objective key {unknown[0]!r}")
    for key in ("callbacks", "constraints", "penalties"):
        if config.get(key):
            raise UnsupportedFeature(f"{field_path}.{key}", key, ["unset"])
    if "data" not in config:
        raise PipelineInputError(f"{field_path}.data", "the objective has no data")
    initial_soc = _check_options(options, kind, f"{field_path}.options")
    model = options.get("model")
    if model is None:
        model = known.get("model")
        if model is None:
            model = DEFAULT_MODEL
        assumed[f"{field_path}.options.model"] = model
    overrides = config.get("parameters") or {}
    if not isinstance(overrides, dict):
        raise PipelineInputError(f"{field_path}.parameters", "parameters must map names to values")
    return ObjectiveSpec(
        name=name,
        field=field_path,
        type=kind,
        model=parse_model(model, f"{field_path}.options.model"),
        data=parse_data(config["data"], f"{field_path}.data", references),
        cost=parse_cost(config["cost"], f"{field_path}.cost") if config.get("cost") is not None else None,
        overrides=usable_parameters(overrides),
        initial_soc=initial_soc,
    )


def _check_options(options: dict[str, Any], kind: str, field_path: str) -> float | str | None:
    unknown = sorted(k for k in set(options) - _OPTION_KEYS if options[k] is not None)
    if unknown:
        raise UnsupportedFeature(
            f"{field_path}.{unknown[0]}", unknown[0], sorted(_OPTION_KEYS - {"parameterized_model_id"})
        )
    if options.get("parameterized_model_id"):
        raise UnsupportedFeature(f"{field_path}.parameterized_model_id", options["parameterized_model_id"], ["model"])
    independent = options.get("independent variable", "time")
    if independent != "time":
        raise UnsupportedFeature(f"{field_path}.independent variable", independent, ["time"])
    variables = options.get("objective variables") or ["Voltage [V]"]
    if list(variables) != ["Voltage [V]"]:
        raise UnsupportedFeature(f"{field_path}.objective variables", variables, ["Voltage [V]"])
    kwargs = options.get("simulation_kwargs") or {}
    extra = sorted(set(kwargs) - {"initial_soc"})
    if extra:
        raise UnsupportedFeature(f"{field_path}.simulation_kwargs.{extra[0]}", extra[0], ["initial_soc"])
    soc = kwargs.get("initial_soc")
    if soc is not None and not isinstance(soc, (int, float, str)):
        raise PipelineInputError(f"{field_path}.simulation_kwargs.initial_soc", "initial_soc is a number or 'x V'")
    return soc


class ObjectiveRun:
    """One objective ready to solve: its data loaded and its model built with ``fitted`` as inputs."""

    def __init__(self, spec: ObjectiveSpec, series: Series, known: Mapping[str, Any], fitted: Sequence[str]) -> None:
        self.spec, self.series = spec, series
        values = {**known, **spec.overrides}
        used = fittable_names(spec.model, values)
        self.fitted = tuple(name for name in fitted if name in used and name not in spec.overrides)
        self.model: PreparedModel | RebuildingModel = prepare_model(
            spec.model,
            values,
            self.fitted,
            series.time,
            series.current,
            series.voltage_range,
            spec.initial_soc,
            field=f"{spec.field}.options.model",
            temperature=series.temperature,
            rested_voltage=series.rested_voltage,
        )

    @classmethod
    def load(
        cls, spec: ObjectiveSpec, loader: MeasurementLoader, known: Mapping[str, Any], fitted: Sequence[str]
    ) -> ObjectiveRun:
        return cls(spec, load_series(spec.data, loader), known, fitted)

    def voltages(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Model voltage for each set of fitted values (shape ``(len(rows), n)``, NaN rows where solves failed)."""
        return self.model.voltages([{name: row[name] for name in self.fitted} for row in rows])

    def describe(self) -> dict[str, Any]:
        return {"type": self.spec.type, "model": self.spec.model.to_wire(), "data": self.series.source,
                "points": int(self.series.time.size)}  # fmt: skip

    def trace(self, model_voltage: np.ndarray) -> dict[str, list[float | None]]:
        """Data and model on at most ``MAX_TRACE_POINTS`` points: time, current, data, model and error voltages."""
        s = self.series
        index = np.unique(np.linspace(0, s.time.size - 1, min(s.time.size, MAX_TRACE_POINTS)).round().astype(int))
        model = np.asarray(model_voltage, dtype=float)[index]
        return {
            "Time [s]": _floats(s.time[index]),
            "Current [A]": _floats(s.current[index]),
            "Data voltage [V]": _floats(s.voltage[index]),
            "Model voltage [V]": _floats(model),
            "Error [V]": _floats(model - s.voltage[index]),
        }


def _floats(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values]


def plots(trace: Mapping[str, list[float | None]], label: str = "Fit") -> list[dict[str, Any]]:
    """Stored plot payloads (plotly vocabulary, as ``GET /pipelines/datafits/{job}/plot_data`` serves them)."""

    def panel(y_label: str, traces: list[tuple[str, str]]) -> dict[str, Any]:
        return {
            "type": "scatter",
            "traces": [{"name": name, "x": trace["Time [s]"], "y": trace[key]} for name, key in traces],
            "layout": {"xaxis": {"title": {"text": "Time [s]"}}, "yaxis": {"title": {"text": y_label}}},
        }

    return [
        panel("Voltage [V]", [("Data", "Data voltage [V]"), (label, "Model voltage [V]")]),
        panel("Error [V]", [("Error", "Error [V]")]),
    ]
