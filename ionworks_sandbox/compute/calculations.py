"""Calculations (``ionworks_schema.calculations``): ``ElectrodeCapacity``.

``Q = c_max * eps_active * L * A * F / 3600`` (times ``|sto_100 - sto_0|`` with ``use_stoich_window``), with
``A`` = ``Electrode area [m2]`` or height x width. Inputs the pipeline does not give come from Chen2020; a
stoichiometry window not given is solved with PyBaMM's electrode SOH model.

Example:
    >>> plan = parse_calculation("cap", {"type": "ElectrodeCapacity", "electrode": "positive"}, "elements.cap")
    >>> values, metadata = run_calculation(plan, known)
    >>> values["Positive electrode capacity [A.h]"]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pybamm

from .errors import PipelineInputError, UnsupportedFeature
from .models import PARAMETER_SET, default_value, is_number, parameter_values

CALCULATIONS = ("ElectrodeCapacity",)
_KEYS = {"type", "calculation", "electrode", "use_stoich_window", "method", "phase", "source", "element_type"}


@dataclass(frozen=True)
class CalculationPlan:
    name: str
    field: str
    type: str
    electrode: str
    use_stoich_window: bool


def parse_calculation(name: str, config: Mapping[str, Any], field_path: str) -> CalculationPlan:
    """Validate a ``calculation`` element."""
    kind = config.get("type") or config.get("calculation")
    if kind not in CALCULATIONS:
        raise UnsupportedFeature(f"{field_path}.type", kind, CALCULATIONS)
    unknown = sorted(set(config) - _KEYS)
    if unknown:
        raise PipelineInputError(f"{field_path}.{unknown[0]}", f"unknown {kind} key {unknown[0]!r}")
    electrode = config.get("electrode")
    if electrode not in ("positive", "negative"):
        raise UnsupportedFeature(f"{field_path}.electrode", electrode, ["negative", "positive"])
    if config.get("method", "auto") != "auto":
        raise UnsupportedFeature(f"{field_path}.method", config["method"], ["auto"])
    if config.get("phase") is not None:
        raise UnsupportedFeature(f"{field_path}.phase", config["phase"], ["unset (single phase)"])
    return CalculationPlan(name, field_path, kind, electrode, bool(config.get("use_stoich_window", False)))


def run_calculation(plan: CalculationPlan, known: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compute; returns the new parameter values and the element's metadata (inputs used, defaults filled)."""
    side = plan.electrode.capitalize()
    names = {
        "c_max": f"Maximum concentration in {plan.electrode} electrode [mol.m-3]",
        "eps": f"{side} electrode active material volume fraction",
        "L": f"{side} electrode thickness [m]",
    }
    if is_number(known.get("Electrode area [m2]")):
        names["A"] = "Electrode area [m2]"
    else:
        names.update(H="Electrode height [m]", W="Electrode width [m]")
    inputs: dict[str, float] = {}
    filled: list[str] = []
    computed: list[str] = []
    for symbol, name in names.items():
        value = known.get(name)
        if not is_number(value):
            value = default_value(name)
            filled.append(name)
        if not is_number(value):
            raise PipelineInputError(plan.field, f"{name!r} must be a number to compute the capacity")
        inputs[name] = float(value)
    area = inputs.get("Electrode area [m2]") or inputs["Electrode height [m]"] * inputs["Electrode width [m]"]
    capacity = (
        inputs[names["c_max"]] * inputs[names["eps"]] * inputs[names["L"]] * area * pybamm.constants.F.value / 3600
    )
    if plan.use_stoich_window:
        low, high = _stoichiometry_window(plan, known, inputs, computed)
        capacity *= abs(high - low)
    output = f"{side} electrode capacity [A.h]"
    metadata = {
        "element_type": "calculation",
        "type": plan.type,
        "electrode": plan.electrode,
        "use_stoich_window": plan.use_stoich_window,
        "inputs": inputs,
        "outputs": {output: capacity},
        "defaults": {"parameter_set": PARAMETER_SET, "filled": filled},
        "computed_with_electrode_soh": computed,
    }
    return {output: capacity}, metadata


def _stoichiometry_window(
    plan: CalculationPlan, known: Mapping[str, Any], inputs: dict[str, float], computed: list[str]
) -> tuple[float, float]:
    side = plan.electrode.capitalize()
    low_name, high_name = f"{side} electrode stoichiometry at 0% SOC", f"{side} electrode stoichiometry at 100% SOC"
    if is_number(known.get(low_name)) and is_number(known.get(high_name)):
        inputs[low_name], inputs[high_name] = float(known[low_name]), float(known[high_name])
        return inputs[low_name], inputs[high_name]
    try:
        x_0, x_100, y_100, y_0 = pybamm.lithium_ion.get_min_max_stoichiometries(parameter_values(known))
    except (pybamm.SolverError, pybamm.ModelError, ValueError) as exc:
        raise PipelineInputError(
            f"{plan.field}.use_stoich_window", f"cannot solve the stoichiometry window: {exc}"
        ) from None
    low, high = (float(x_0), float(x_100)) if plan.electrode == "negative" else (float(y_0), float(y_100))
    inputs[low_name], inputs[high_name] = low, high
    computed.extend([low_name, high_name])
    return low, high
