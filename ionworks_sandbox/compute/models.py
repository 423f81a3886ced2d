"""PyBaMM models built once per process and solved many times with IDAKLU.

A model is built with the fitted parameters as ``"[input]"`` and the measured current as the drive (and the
measured temperature as the ambient temperature when the data has one), asks the solver only for
``Voltage [V]``, and is cached per process, keyed by everything that changes the built model (model type and
options, fitted names, fixed values, the data's time grid, current and temperature). When the data opens with
a rest, the model starts at that rested voltage (``initial_state.RestedStart``). Geometric parameters
(thicknesses, particle radii) size the mesh, so they cannot be solver inputs: a fit of one builds the model
for each value tried (``RebuildingModel``), as PyBOP does. Parameters the pipeline does not give come from
PyBaMM's ``Chen2020`` set.

Example:
    >>> spec = parse_model({"type": "SPMe"}, "options.model")
    >>> model = prepare_model(spec, {}, ["Negative particle diffusivity [m2.s-1]"], time, current, (2.5, 4.2))
    >>> voltages = model.voltages([{"Negative particle diffusivity [m2.s-1]": 3e-14}])  # shape (1, len(time))
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pybamm
from ionworks_schema.serialize import deserialize_parameter_value

from .errors import PipelineInputError, UnsupportedFeature
from .initial_state import INITIAL_CONCENTRATIONS, RestedStart

PARAMETER_SET = "Chen2020"
MODEL_CLASSES = {"SPM": pybamm.lithium_ion.SPM, "SPMe": pybamm.lithium_ion.SPMe, "DFN": pybamm.lithium_ion.DFN}
#: Parameters the engine sets from the objective's data rather than from the parameter set.
ENGINE_SET = frozenset({"Current function [A]", "Lower voltage cut-off [V]", "Upper voltage cut-off [V]"})
#: How far beyond the measured voltage range the model may go before its cut-off events stop it.
CUTOFF_MARGIN_V = 0.2
_CACHE_SIZE = 16
_MODEL_KEYS = {"type", "options", "module", "name"}


@dataclass(frozen=True)
class ModelSpec:
    """A battery model: one of ``MODEL_CLASSES`` plus PyBaMM model options (as sorted JSON).

    Example:
        >>> ModelSpec("SPMe", "{}").label
        'SPMe'
    """

    type: str
    options_json: str = "{}"

    @property
    def options(self) -> dict[str, Any]:
        return json.loads(self.options_json)

    @property
    def label(self) -> str:
        return self.type if self.options_json == "{}" else f"{self.type} {self.options_json}"

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "options": self.options}


def parse_model(value: Any, field: str) -> ModelSpec:
    """Read a model as the client sends it: ``"SPMe"``, ``{"type": "SPMe", "options": {...}}`` or a serialised model.

    Example:
        >>> parse_model("SPM", "options.model").type
        'SPM'
    """
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise PipelineInputError(field, "a model is a name such as 'SPMe' or an object with a 'type'")
    model_type = value["type"]
    if model_type not in MODEL_CLASSES:
        raise UnsupportedFeature(f"{field}.type", model_type, MODEL_CLASSES)
    extra = sorted(set(value) - _MODEL_KEYS)
    if extra:
        raise UnsupportedFeature(f"{field}.{extra[0]}", extra[0], _MODEL_KEYS)
    if value.get("module", "lithium_ion") != "lithium_ion":
        raise UnsupportedFeature(f"{field}.module", value["module"], ["lithium_ion"])
    options = value.get("options") or {}
    if not isinstance(options, dict):
        raise PipelineInputError(f"{field}.options", "model options must be an object")
    try:
        pybamm.BatteryModelOptions(dict(options))
    except (pybamm.OptionError, pybamm.ModelError, KeyError, TypeError, ValueError) as exc:
        raise PipelineInputError(f"{field}.options", f"invalid {model_type} options: {exc}") from None
    return ModelSpec(model_type, json.dumps(options, sort_keys=True))


@functools.cache
def _chen2020() -> pybamm.ParameterValues:
    return pybamm.ParameterValues(PARAMETER_SET)


def default_parameter_names() -> frozenset[str]:
    """Names defined by the default parameter set."""
    return frozenset(_chen2020().keys())


def default_value(name: str) -> Any:
    """A parameter's value in the default set (a number or a PyBaMM function)."""
    return _chen2020()[name]


@functools.cache
def model_parameter_names(spec: ModelSpec) -> frozenset[str]:
    """Every parameter the model reads (before any parameter set is applied)."""
    return frozenset(MODEL_CLASSES[spec.type](spec.options).get_parameter_info())


@functools.cache
def geometric_parameter_names(spec: ModelSpec) -> frozenset[str]:
    """Parameters that size the model's geometry (and so its mesh): these cannot be solver inputs."""
    names: set[str] = set()
    for domain in MODEL_CLASSES[spec.type](spec.options).default_geometry.values():
        for bounds in domain.values():
            for bound in bounds.values() if isinstance(bounds, dict) else ():
                if isinstance(bound, pybamm.Symbol):
                    names |= {s.name for s in bound.pre_order() if isinstance(s, (pybamm.Parameter,
                                                                                     pybamm.FunctionParameter))}
    return frozenset(names)


def fittable_names(spec: ModelSpec, known: Mapping[str, Any]) -> frozenset[str]:
    """The model's parameters plus those that expressions given in ``known`` read (e.g. OCP knot values)."""
    names = set(model_parameter_names(spec))
    for name, value in usable_parameters(known).items():
        if isinstance(value, dict):
            try:
                symbol = deserialize_parameter_value(value)
            except Exception:  # reported with its field when the model is built
                continue
            if isinstance(symbol, pybamm.Symbol):
                names |= {s.name for s in symbol.pre_order() if isinstance(s, pybamm.Parameter)}
    return frozenset(names)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def usable_parameters(known: Mapping[str, Any]) -> dict[str, Any]:
    """The values in ``known`` that can be PyBaMM parameters: numbers, and serialised expressions of known names."""
    names = default_parameter_names()
    return {
        name: value
        for name, value in known.items()
        if (is_number(value) and np.isfinite(value)) or (isinstance(value, dict) and name in names)
    }


def parameter_values(known: Mapping[str, Any]) -> pybamm.ParameterValues:
    """Chen2020 overlaid with the usable values of ``known`` (wire form: numbers or symbol JSON)."""
    values = _chen2020().copy()
    update: dict[str, Any] = {}
    for name, value in usable_parameters(known).items():
        if isinstance(value, dict):
            try:
                update[name] = deserialize_parameter_value(value)
            except Exception as exc:  # any malformed expression is the caller's input error
                raise PipelineInputError(f"parameter_values.{name}", f"cannot read expression: {exc}") from None
        else:
            update[name] = float(value)
    values.update(update, check_already_exists=False)
    return values


def _fingerprint(*parts: Any) -> str:
    digest = hashlib.sha1()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part, dtype=float).tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"|")
    return digest.hexdigest()


class PreparedModel:
    """A built, discretised model driven by one measured current; solve it for sets of fitted values.

    Example:
        >>> prepared.voltages([{"Negative particle diffusivity [m2.s-1]": 3e-14}]).shape
        (1, 355)
    """

    def __init__(
        self, sim: pybamm.Simulation, fitted: tuple[str, ...], time: np.ndarray, start: RestedStart | None = None
    ) -> None:
        self._model = sim.built_model
        self._solver = sim.solver
        self.fitted = fitted
        self.time = time
        self._start = start

    def voltages(self, inputs: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Voltage on the data's time grid per input set; a row of NaN where the solver failed.

        A solve that stops early (cut-off event or solver failure part-way) holds its last voltage for the
        rest of the grid, so the cost stays continuous as the stop moves. With a rested start, a set of values
        for which no state has the rested voltage is a failed row too.
        """
        out = np.full((len(inputs), self.time.size), np.nan)
        if self._start is not None:
            starts = [self._start.concentrations(row) for row in inputs]
            rows = [i for i, start in enumerate(starts) if start is not None]
            if rows:
                out[rows] = self._voltages([{**inputs[i], **starts[i]} for i in rows])
            return out
        return self._voltages(inputs)

    def _voltages(self, inputs: Sequence[Mapping[str, float]]) -> np.ndarray:
        out = np.full((len(inputs), self.time.size), np.nan)
        if not inputs:
            return out
        try:
            solutions = self._solve([dict(i) for i in inputs])
        except pybamm.SolverError:
            if len(inputs) == 1:
                return out
            for row, single in enumerate(inputs):
                out[row] = self._voltages([single])[0]
            return out
        for row, solution in enumerate(solutions):
            out[row] = self._on_grid(solution)
        return out

    def _solve(self, inputs: list[dict[str, float]]) -> list[pybamm.Solution]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            solutions = self._solver.solve(
                self._model, t_eval=[self.time[0], self.time[-1]], t_interp=self.time, inputs=inputs
            )
        return solutions if isinstance(solutions, list) else [solutions]

    def _on_grid(self, solution: pybamm.Solution) -> np.ndarray:
        try:
            t = np.asarray(solution.t, dtype=float)
            v = np.asarray(solution["Voltage [V]"].entries, dtype=float).ravel()
        except Exception:  # a solution without output is a failed solve
            return np.full(self.time.size, np.nan)
        if t.size == 0 or v.size != t.size or not np.all(np.isfinite(v)):
            return np.full(self.time.size, np.nan)
        if t.size == self.time.size and t[-1] >= self.time[-1]:
            return v
        return np.interp(self.time, t, v, right=v[-1])


class RebuildingModel:
    """A model whose fitted values include geometric parameters: built (and cached) once per geometry tried.

    Rows sharing geometric values are solved together on one build; the other fitted names stay inputs.
    """

    def __init__(self, geometric: tuple[str, ...], build: Any, fitted: tuple[str, ...], time: np.ndarray) -> None:
        self._geometric, self._build, self.fitted, self.time = geometric, build, fitted, time

    def voltages(self, inputs: Sequence[Mapping[str, float]]) -> np.ndarray:
        out = np.full((len(inputs), self.time.size), np.nan)
        groups: dict[tuple[float, ...], list[int]] = {}
        for row, values in enumerate(inputs):
            groups.setdefault(tuple(float(values[name]) for name in self._geometric), []).append(row)
        for geometry, rows in groups.items():
            if not all(np.isfinite(geometry)) or min(geometry) <= 0:
                continue
            try:
                model = self._build(dict(zip(self._geometric, geometry)))
            except PipelineInputError:
                continue  # this geometry cannot be built: a failed evaluation
            rest = [{k: v for k, v in inputs[row].items() if k not in self._geometric} for row in rows]
            out[rows] = model.voltages(rest)
        return out


_cache: OrderedDict[str, PreparedModel] = OrderedDict()


def prepare_model(
    spec: ModelSpec,
    known: Mapping[str, Any],
    fitted: Sequence[str],
    time: np.ndarray,
    current: np.ndarray,
    voltage_range: tuple[float, float],
    initial_soc: float | str | None = None,
    field: str = "options.model",
    temperature: np.ndarray | None = None,
    rested_voltage: float | None = None,
) -> PreparedModel | RebuildingModel:
    """Build (or reuse from the per-process cache) ``spec`` driven by ``current`` over ``time``.

    ``known`` are fixed parameter values (wire form), ``fitted`` the names solved as inputs; the cut-off
    voltages are widened to at least ``CUTOFF_MARGIN_V`` outside ``voltage_range`` (the measured range), so
    the model covers the whole measurement unless it is far off. ``temperature`` (degC, on the time grid)
    becomes the ambient temperature; ``rested_voltage`` the open-circuit voltage the model starts at (unless
    ``initial_soc`` is given).

    Example:
        >>> prepare_model(ModelSpec("SPM"), {}, ["Negative particle radius [m]"], t, i, (2.5, 4.2))
    """
    fitted = tuple(fitted)
    geometric = tuple(name for name in fitted if name in geometric_parameter_names(spec))
    if geometric:
        rest = tuple(name for name in fitted if name not in geometric)

        def build(geometry: dict[str, float]) -> PreparedModel:
            return prepare_model(spec, {**known, **geometry}, rest, time, current, voltage_range, initial_soc,
                                 field, temperature, rested_voltage)  # fmt: skip

        return RebuildingModel(geometric, build, fitted, time)
    usable = {k: v for k, v in usable_parameters(known).items() if k not in fitted and k not in ENGINE_SET}
    key = _fingerprint(spec.type, spec.options_json, fitted, usable, time, current, voltage_range, initial_soc,
                       temperature if temperature is not None else "isothermal", rested_voltage)  # fmt: skip
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    prepared = _build(spec, usable, fitted, time, current, voltage_range, initial_soc, field, temperature,
                      rested_voltage)  # fmt: skip
    _cache[key] = prepared
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return prepared


def _build(
    spec: ModelSpec,
    usable: Mapping[str, Any],
    fitted: tuple[str, ...],
    time: np.ndarray,
    current: np.ndarray,
    voltage_range: tuple[float, float],
    initial_soc: float | str | None,
    field: str,
    temperature: np.ndarray | None = None,
    rested_voltage: float | None = None,
) -> PreparedModel:
    model = MODEL_CLASSES[spec.type](spec.options)
    values = parameter_values(usable)
    values.update(
        {
            "Current function [A]": pybamm.Interpolant(time, current, pybamm.t, interpolator="linear"),
            "Lower voltage cut-off [V]": max(
                min(values["Lower voltage cut-off [V]"], voltage_range[0] - CUTOFF_MARGIN_V), 0.0
            ),
            "Upper voltage cut-off [V]": max(values["Upper voltage cut-off [V]"], voltage_range[1] + CUTOFF_MARGIN_V),
        },
        check_already_exists=False,
    )
    if temperature is not None:
        kelvin = np.asarray(temperature, dtype=float) + 273.15
        values.update(
            {
                "Ambient temperature [K]": pybamm.Interpolant(time, kelvin, pybamm.t, interpolator="linear"),
                "Initial temperature [K]": float(kelvin[0]),
            },
            check_already_exists=False,
        )
    start = None
    if initial_soc is not None:
        try:
            values.set_initial_state(initial_soc, options=spec.options)
        except (ValueError, pybamm.SolverError, pybamm.ModelError) as exc:
            raise PipelineInputError(f"{field}.simulation_kwargs.initial_soc", str(exc)) from None
    values.update({name: "[input]" for name in fitted}, check_already_exists=False)
    if initial_soc is None and rested_voltage is not None:
        start = _rested_start(values, rested_voltage, field)
        values.update({name: "[input]" for name in INITIAL_CONCENTRATIONS}, check_already_exists=False)
    solver = pybamm.IDAKLUSolver(output_variables=["Voltage [V]"], on_failure="ignore", on_extrapolation="ignore")
    sim = pybamm.Simulation(model, parameter_values=values, solver=solver)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sim.build()
    except (pybamm.ModelError, pybamm.DiscretisationError, KeyError, ValueError, TypeError) as exc:
        raise PipelineInputError(field, f"cannot build the {spec.type} model with these parameters: {exc}") from None
    return PreparedModel(sim, fitted, time, start)


def _rested_start(values: pybamm.ParameterValues, voltage: float, field: str) -> RestedStart:
    try:
        return RestedStart(values, voltage, float(values["Initial temperature [K]"]))
    except (pybamm.ModelError, KeyError, ValueError, TypeError) as exc:
        raise PipelineInputError(field, f"cannot start the model at the rested voltage {voltage} V: {exc}") from None
