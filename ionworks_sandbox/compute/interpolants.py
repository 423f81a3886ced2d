"""The ``PiecewiseInterpolation1D`` entry (``ionworks_schema.direct_entries``) for electrode OCPs.

The entry turns an electrode's OCP into a piecewise-linear function of stoichiometry whose value at each
breakpoint is a parameter named as ``SlopesToKnots`` names knots: ``"Positive electrode OCP at Stoichiometry
0.5 [V]"``. The knots start at the current OCP's values (the base parameter set unless an earlier element set
it), so a following ``data_fit`` can adapt the OCP to the cell by fitting them. Segments meet through a smooth
hinge ``(d + sqrt(d^2 + s^2)) / 2`` of width ``smoothing``, and the end segments extend linearly.

Example:
    >>> values = parse_piecewise_entry({"element_type": "entry", "name": "PiecewiseInterpolation1D",
    ...     "base_parameter_name": "Positive electrode OCP [V]", "breakpoint_parameter_name": "Stoichiometry",
    ...     "breakpoint_values": [0.2, 0.5, 0.9]}, "elements.ocp", {})
    >>> values["Positive electrode OCP at Stoichiometry 0.5 [V]"]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pybamm
from ionworks_schema.serialize import serialize_parameter_value

from .errors import PipelineInputError, UnsupportedFeature
from .models import is_number, parameter_values

ENTRY_NAME = "PiecewiseInterpolation1D"
#: Functions the entry can replace, with the PyBaMM parameter that evaluates them.
BASE_PARAMETERS = ("Negative electrode OCP [V]", "Positive electrode OCP [V]")
BREAKPOINT_PARAMETERS = ("Stoichiometry",)
_KEYS = {"element_type", "name", "base_parameter_name", "breakpoint_values", "breakpoint_parameter_name",
         "smoothing", "formulation", "source", "parameters"}  # fmt: skip


def knot_name(base: str, breakpoint_name: str, value: float) -> str:
    """The knot's name, as ``SlopesToKnots`` names them.

    Example:
        >>> knot_name("Positive electrode OCP [V]", "Stoichiometry", 0.5)
        'Positive electrode OCP at Stoichiometry 0.5 [V]'
    """
    stem, _, unit = base.rpartition(" [")
    return f"{stem} at {breakpoint_name} {value:g} [{unit}" if stem else f"{base} at {breakpoint_name} {value:g}"


def parse_piecewise_entry(config: Mapping[str, Any], field_path: str, known: Mapping[str, Any]) -> dict[str, Any]:
    """The values the entry adds: its knots (current OCP values unless ``known`` has them) and the function."""
    unknown = sorted(set(config) - _KEYS)
    if unknown:
        raise PipelineInputError(f"{field_path}.{unknown[0]}", f"unknown {ENTRY_NAME} key {unknown[0]!r}")
    base = config.get("base_parameter_name")
    if base not in BASE_PARAMETERS:
        raise UnsupportedFeature(f"{field_path}.base_parameter_name", base, BASE_PARAMETERS)
    breakpoint_name = config.get("breakpoint_parameter_name")
    if breakpoint_name not in BREAKPOINT_PARAMETERS:
        raise UnsupportedFeature(f"{field_path}.breakpoint_parameter_name", breakpoint_name, BREAKPOINT_PARAMETERS)
    if config.get("formulation", "knots") != "knots":
        raise UnsupportedFeature(f"{field_path}.formulation", config["formulation"], ["knots"])
    if config.get("parameters"):
        raise UnsupportedFeature(f"{field_path}.parameters", "parameters", ["unset"])
    points = config.get("breakpoint_values")
    if not isinstance(points, list) or not all(is_number(p) for p in points):
        raise PipelineInputError(f"{field_path}.breakpoint_values", "breakpoint_values is a list of numbers")
    points = [float(p) for p in points]
    if len(points) < 2 or np.any(np.diff(points) <= 0) or points[0] < 0 or points[-1] > 1:
        raise PipelineInputError(
            f"{field_path}.breakpoint_values", "needs at least 2 increasing stoichiometries within [0, 1]"
        )
    smoothing = config.get("smoothing", 1e-4)
    if not is_number(smoothing) or smoothing <= 0:
        raise PipelineInputError(f"{field_path}.smoothing", "smoothing must be a positive number")
    names = [knot_name(base, breakpoint_name, p) for p in points]
    current = _current_values(base, points, known, field_path)
    knots = {n: float(known[n]) if is_number(known.get(n)) else v for n, v in zip(names, current, strict=True)}
    function = _piecewise_linear(points, names, float(smoothing))
    return {**knots, base: serialize_parameter_value(base, function)}


def _current_values(base: str, points: list[float], known: Mapping[str, Any], field_path: str) -> list[float]:
    values = parameter_values(known)
    param = pybamm.LithiumIonParameters()
    electrode = param.n.prim if base.startswith("Negative") else param.p.prim
    try:
        symbol = values.process_symbol(electrode.U(pybamm.Vector(np.array(points)), param.T_ref))
        return [float(v) for v in np.asarray(symbol.evaluate()).ravel()]
    except (pybamm.ModelError, KeyError, ValueError, TypeError) as exc:
        raise PipelineInputError(f"{field_path}.base_parameter_name", f"cannot evaluate {base!r}: {exc}") from None


def _piecewise_linear(points: list[float], names: list[str], smoothing: float):
    slopes_between = len(points) - 1

    def hinge(distance: pybamm.Symbol) -> pybamm.Symbol:
        return (distance + pybamm.sqrt(distance**2 + smoothing**2)) / 2

    def ocp(sto: pybamm.Symbol) -> pybamm.Symbol:
        knots = [pybamm.Parameter(name) for name in names]
        slopes = [(knots[i + 1] - knots[i]) / (points[i + 1] - points[i]) for i in range(slopes_between)]
        value = knots[0] + slopes[0] * (sto - points[0])
        for i in range(1, slopes_between):
            value = value + (slopes[i] - slopes[i - 1]) * hinge(sto - points[i])
        return value

    return ocp
