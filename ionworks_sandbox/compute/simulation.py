"""Run a UCP protocol on a PyBaMM model: the time series, per-step table and metrics of one simulation.

Built simulations are cached per process, keyed by model, parameters, experiment and output variables;
design parameters are solved as PyBaMM inputs where the model allows it (geometry does not), so a DOE sweep
over them builds once.

Example:
    >>> out = run_simulation({"type": "SPM"}, protocol_text, {}, {}, None)
    >>> out.metrics["Discharge capacity [A.h]"]
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from .simulation_tables import sanitize_metrics, step_table, time_series_table
from .ucp import parse_protocol, to_pybamm_experiment

MODEL_TYPES = ("SPM", "SPMe", "DFN")
DEFAULT_PARAMETER_SET = "Chen2020"
_MODEL_KEYS = ("type", "options", "parameter_set", "parameters")
#: PyBaMM variables every simulation records, in the order the time series lists them.
BASE_VARIABLES = (
    "Time [s]", "Current [A]", "Voltage [V]", "Discharge capacity [A.h]", "Discharge energy [W.h]",
    "Volume-averaged cell temperature [K]",
)
_CACHE_SIZE = 8
_cache: OrderedDict[str, Any] = OrderedDict()
_input_refused: set[str] = set()
_lock = threading.Lock()


class ModelConfigError(ValueError):
    """The model, its parameters, a design parameter or an extra variable is unusable; the message names it.

    Example:
        >>> raise ModelConfigError("design parameter 'Foo [m]' is not a parameter of the model")
    """

    error_code = "CONFIGURATION_ERROR"


class SimulationError(RuntimeError):
    """The solver could not run the protocol.

    Example:
        >>> raise SimulationError("the solver failed in step 2: ...")
    """

    error_code = "SIMULATION_FAILED"


@dataclass(frozen=True)
class SimulationOutput:
    """``time_series`` (one row per time point), ``steps`` (one row per run step), scalar ``metrics``.

    ``termination`` is ``"completed"`` or says which step stopped the run early or was skipped.
    """

    time_series: pl.DataFrame
    steps: pl.DataFrame
    metrics: dict[str, Any]
    termination: str


def run_simulation(
    model: Mapping[str, Any],
    protocol_text: str,
    experiment_parameters: Mapping[str, Any] | None,
    design_parameters: Mapping[str, float] | None,
    extra_variables: list[str] | None,
) -> SimulationOutput:
    """Simulate ``protocol_text`` (UCP YAML) on ``model`` with design parameter overrides.

    ``model`` is ``{"type": "SPM"|"SPMe"|"DFN", "options"?: {...}, "parameter_set"?: "Chen2020",
    "parameters"?: {name: number or serialised PyBaMM expression}}``. Raises ``ProtocolError`` (bad
    protocol or missing input), ``ModelConfigError`` or ``SimulationError``.

    Example:
        >>> run_simulation({"type": "SPM"}, text, {"C-rate": 1}, {"Negative particle radius [m]": 5e-6}, None)
    """
    import pybamm

    protocol = parse_protocol(protocol_text, experiment_parameters)
    model_type, options_json, parameter_set, parameters_json = _model_key(model)
    values = _parameter_values(parameter_set, parameters_json)
    design = _design(design_parameters, values)
    outputs = _outputs(model_type, options_json, extra_variables)
    capacity = design.get("Nominal cell capacity [A.h]", values.get("Nominal cell capacity [A.h]", None))
    try:
        experiment, initial_soc, temperature_k = to_pybamm_experiment(protocol, _float_or_none(capacity))
    except ValueError as exc:
        raise ModelConfigError(str(exc)) from None
    base_key = _fingerprint(model_type, options_json, parameter_set, parameters_json, repr(experiment),
                            temperature_k, outputs)
    with _lock, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim, inputs = _prepared(pybamm, base_key, model_type, options_json, values, experiment, temperature_k,
                                outputs, design, initial_soc)
        try:
            solution = sim.solve(initial_soc=initial_soc, inputs=inputs, calc_esoh=False)
        except pybamm.SolverError as exc:
            raise SimulationError(f"the solver failed: {exc}") from None
    if solution is None or not solution.cycles:
        raise SimulationError("no protocol step could run from the initial state")
    run, termination = _run_steps(protocol, solution.cycles[0].steps, pybamm.EmptySolution)
    time_series = time_series_table(run, outputs)
    steps = step_table(time_series, [step for step, _ in run])
    return SimulationOutput(time_series, steps, sanitize_metrics(_metrics(time_series, steps)), termination)


def _model_key(model: Mapping[str, Any]) -> tuple[str, str, str, str]:
    if not isinstance(model, Mapping):
        raise ModelConfigError(f"the model must be an object with a 'type', got {type(model).__name__}")
    unknown = [key for key in model if key not in _MODEL_KEYS]
    if unknown:
        raise ModelConfigError(f"unknown model field {unknown[0]!r}; expected {', '.join(_MODEL_KEYS)}")
    model_type = model.get("type")
    if model_type not in MODEL_TYPES:
        raise ModelConfigError(f"model type {model_type!r} is not supported; expected one of {', '.join(MODEL_TYPES)}")
    options = model.get("options") or {}
    parameters = model.get("parameters") or {}
    for name, value in (("options", options), ("parameters", parameters)):
        if not isinstance(value, Mapping):
            raise ModelConfigError(f"model {name} must be an object")
    parameter_set = model.get("parameter_set") or DEFAULT_PARAMETER_SET
    # PyBaMM integrates V*I (for the energy columns) only with this option; it adds two states, nothing else.
    options_json = json.dumps({**options, "calculate discharge energy": "true"}, sort_keys=True)
    _variable_names(model_type, options_json)
    return model_type, options_json, str(parameter_set), json.dumps(dict(parameters), sort_keys=True)


@functools.lru_cache(maxsize=16)
def _parameter_values(parameter_set: str, parameters_json: str) -> Any:
    import pybamm

    try:
        values = pybamm.ParameterValues(parameter_set)
    except (ValueError, KeyError):
        raise ModelConfigError(f"unknown parameter set {parameter_set!r}; for example "
                               f"{DEFAULT_PARAMETER_SET!r}") from None
    numbers: dict[str, float] = {}
    expressions: dict[str, Any] = {}
    for name, value in json.loads(parameters_json).items():
        if isinstance(value, dict):
            expressions[name] = value
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            numbers[name] = float(value)
        else:
            raise ModelConfigError(f"model parameter {name!r} must be a finite number or a serialised "
                                   f"expression, got {value!r}")
    if expressions:
        try:
            numbers.update(dict(pybamm.ParameterValues.from_json(expressions).items()))
        except Exception as exc:  # a malformed expression is the caller's input error
            raise ModelConfigError(f"cannot read the model's parameter expressions: {exc}") from None
    values.update(numbers, check_already_exists=False)
    return values


@functools.lru_cache(maxsize=16)
def _variable_names(model_type: str, options_json: str) -> dict[str, bool]:
    """Every variable of the model, mapped to whether it is a scalar over time (a possible column)."""
    import pybamm

    try:
        model = getattr(pybamm.lithium_ion, model_type)(json.loads(options_json))
    except (pybamm.OptionError, pybamm.ModelError, KeyError, TypeError, ValueError) as exc:
        raise ModelConfigError(f"invalid {model_type} options: {exc}") from None
    return {name: variable.domain in ([], ["current collector"]) for name, variable in model.variables.items()}


def _design(design_parameters: Mapping[str, float] | None, values: Any) -> dict[str, float]:
    design: dict[str, float] = {}
    for name, value in (design_parameters or {}).items():
        if name not in values.keys():
            raise ModelConfigError(f"design parameter {name!r} is not a parameter of the model")
        number = _float_or_none(value)
        if number is None:
            raise ModelConfigError(f"design parameter {name!r} must be a finite number, got {value!r}")
        design[name] = number
    return design


def _outputs(model_type: str, options_json: str, extra_variables: list[str] | None) -> tuple[str, ...]:
    names = _variable_names(model_type, options_json)
    extras = list(dict.fromkeys(extra_variables or []))
    for name in extras:
        if name not in names:
            raise ModelConfigError(f"extra variable {name!r} is not a variable of the {model_type} model")
        if not names[name]:
            raise ModelConfigError(f"extra variable {name!r} varies in space, so it cannot be a time-series column")
    return tuple(dict.fromkeys([*BASE_VARIABLES, *extras]))


def _prepared(pybamm: Any, base_key: str, model_type: str, options_json: str, values: Any, experiment: Any,
              temperature_k: float, outputs: tuple[str, ...], design: dict[str, float],
              initial_soc: float | str | None) -> tuple[Any, dict[str, float] | None]:
    """A built simulation and the inputs to solve it with: design values as inputs when the model allows."""
    names = sorted(design)
    input_key = _fingerprint(base_key, "inputs", names)
    if names and input_key not in _input_refused:
        sim = _cached(input_key, lambda: _simulation(pybamm, model_type, options_json, values, experiment,
                                                     temperature_k, outputs, {n: "[input]" for n in names}))
        try:
            sim.build_for_experiment(initial_soc=initial_soc, inputs=design)
            return sim, design
        except Exception:  # PyBaMM cannot take these as inputs (e.g. geometry): build with the values
            _input_refused.add(input_key)
            _cache.pop(input_key, None)
    key = _fingerprint(base_key, "values", sorted(design.items()))
    sim = _cached(key, lambda: _simulation(pybamm, model_type, options_json, values, experiment, temperature_k,
                                           outputs, design))
    try:
        sim.build_for_experiment(initial_soc=initial_soc)
    except (pybamm.ModelError, pybamm.DiscretisationError, pybamm.SolverError, KeyError, ValueError,
            TypeError) as exc:
        _cache.pop(key, None)
        raise ModelConfigError(f"cannot set up the {model_type} model for this run: {exc}") from None
    return sim, None


def _simulation(pybamm: Any, model_type: str, options_json: str, values: Any, experiment: Any,
                temperature_k: float, outputs: tuple[str, ...], overrides: Mapping[str, Any]) -> Any:
    parameter_values = values.copy()
    parameter_values.update({"Initial temperature [K]": temperature_k, "Ambient temperature [K]": temperature_k,
                             **overrides}, check_already_exists=False)
    model = getattr(pybamm.lithium_ion, model_type)(json.loads(options_json))
    solver = pybamm.IDAKLUSolver(output_variables=list(outputs))
    return pybamm.Simulation(model, experiment=experiment, parameter_values=parameter_values, solver=solver)


def _cached(key: str, build: Any) -> Any:
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    _cache[key] = build()
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return _cache[key]


def _run_steps(protocol: Any, step_solutions: list[Any], empty: type) -> tuple[list[tuple[Any, Any]], str]:
    run = [(step, sol) for step, sol in zip(protocol.steps, step_solutions) if not isinstance(sol, empty)]
    if not run:
        raise SimulationError("no protocol step could run from the initial state")
    notes = [f"step {step.number} skipped (its end condition held at its start)"
             for step, sol in zip(protocol.steps, step_solutions) if isinstance(sol, empty)]
    if len(step_solutions) < len(protocol.steps):
        last_step, last_solution = run[-1]
        first, last = len(step_solutions) + 1, len(protocol.steps)
        rest = f"step {first}" if first == last else f"steps {first}-{last}"
        notes.append(f"stopped in step {last_step.number} ({last_solution.termination}); {rest} did not run")
    return run, "; ".join(notes) or "completed"


def _metrics(time_series: pl.DataFrame, steps: pl.DataFrame) -> dict[str, Any]:
    time = time_series["Time [s]"]
    voltage = time_series["Voltage [V]"]
    return {
        "Duration [s]": time[-1] - time[0],
        "Discharge capacity [A.h]": steps["Discharge capacity [A.h]"].sum(),
        "Charge capacity [A.h]": steps["Charge capacity [A.h]"].sum(),
        "Discharge energy [W.h]": steps["Discharge energy [W.h]"].sum(),
        "Charge energy [W.h]": steps["Charge energy [W.h]"].sum(),
        "Minimum voltage [V]": voltage.min(),
        "Maximum voltage [V]": voltage.max(),
        "Final voltage [V]": voltage[-1],
        "Number of steps": steps.height,
    }


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fingerprint(*parts: Any) -> str:
    digest = hashlib.sha1()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"|")
    return digest.hexdigest()
