"""UCP end conditions: ``"Voltage > 4.2"``-style strings and ``{variable, value, operator}`` mappings.

Each parser returns ``(variable, operator, value)`` with the value in V, A (magnitude), s or 1/h, or raises
``ValueError`` saying what is wrong.

Example:
    >>> parse_end_string("Current < 50 mA")
    ('Current', '<', 0.05)
"""

from __future__ import annotations

import math
import re
from typing import Any

END_FIELDS = ("variable", "value", "operator")
EndSpec = tuple[str, str, float]

_VARIABLES = {
    "voltage": "Voltage", "v": "Voltage", "cell voltage": "Voltage",
    "current": "Current", "i": "Current",
    "time": "Time", "step time": "Time", "duration": "Time", "t": "Time",
    "c-rate": "C-rate", "crate": "C-rate", "c rate": "C-rate", "c_rate": "C-rate",
}
_UNITS = {
    "Voltage": {"": 1.0, "v": 1.0, "mv": 1e-3},
    "Current": {"": 1.0, "a": 1.0, "ma": 1e-3, "ua": 1e-6, "µa": 1e-6},
    "Time": {"": 1.0, "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "min": 60.0, "mins": 60.0,
             "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0,
             "hours": 3600.0},
    "C-rate": {"": 1.0, "c": 1.0, "1/h": 1.0},
}
_DEFAULT_OPERATOR = {"Current": "<", "Time": ">", "C-rate": "<"}
_NAME_RE = re.compile(r"^\s*(?P<name>[A-Za-z][A-Za-z_\- ]*?)\s*(?:\[(?P<unit>[^\]]*)\])?\s*$")
_STRING_RE = re.compile(r"^\s*(?P<variable>[A-Za-z][^<>=]*?)\s*(?P<op><=|>=|<|>|=)\s*(?P<value>\S.*?)\s*$")
_VALUE_RE = re.compile(r"^(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>[A-Za-zµ/]*)$")


def parse_end_string(text: str) -> EndSpec:
    """Read ``"<variable> <op> <value> [unit]"``, e.g. ``"Voltage > 4.2"`` or ``"Time > 30 min"``.

    Example:
        >>> parse_end_string("Voltage > 4.2")
        ('Voltage', '>', 4.2)
    """
    match = _STRING_RE.match(text)
    if not match:
        raise ValueError(f"cannot read end condition {text!r}; write it like 'Voltage > 4.2' or 'Time > 1 h'")
    variable, bracket_unit = _variable(match.group("variable"))
    return _spec(variable, match.group("op"), match.group("value"), bracket_unit)


def parse_end_mapping(raw: dict[str, Any], direction: str) -> EndSpec:
    """Read ``{variable: "Voltage [V]", value: 2.5[, operator: "<"]}``; the operator follows the direction.

    Example:
        >>> parse_end_mapping({"variable": "Voltage [V]", "value": 2.5}, "Discharge")
        ('Voltage', '<', 2.5)
    """
    for key in ("variable", "value"):
        if key not in raw:
            raise ValueError(f"an end condition needs {key!r}")
    variable, bracket_unit = _variable(str(raw["variable"]))
    operator = raw.get("operator")
    if operator is None:
        operator = _DEFAULT_OPERATOR.get(variable)
        if variable == "Voltage":
            operator = {"Charge": ">", "Discharge": "<"}.get(direction)
        if operator is None:
            raise ValueError("a voltage end on a Rest step needs an operator, e.g. 'Voltage > 3.6'")
    return _spec(variable, str(operator).strip(), raw["value"], bracket_unit)


def time_end(value: Any) -> EndSpec:
    """A step ``duration`` (seconds, or a string with units such as ``"1 h"``) as a time end.

    Example:
        >>> time_end("2 min")
        ('Time', '>', 120.0)
    """
    return _spec("Time", ">", value, "")


def _variable(text: str) -> tuple[str, str]:
    match = _NAME_RE.match(text)
    variable = _VARIABLES.get(match.group("name").strip().lower()) if match else None
    if variable is None:
        raise ValueError(f"unknown end-condition variable {text.strip()!r}; expected Voltage, Current, Time or "
                         "C-rate")
    return variable, (match.group("unit") or "").strip()


def _spec(variable: str, operator: str, raw_value: Any, bracket_unit: str) -> EndSpec:
    if operator not in ("<", ">", "<=", ">=", "="):
        raise ValueError(f"unknown operator {operator!r}; expected '<' or '>'")
    if operator == "=" and variable != "Time":
        raise ValueError(f"a {variable} end needs '<' or '>', not '='")
    operator = ">" if operator in (">=", "=") else "<" if operator == "<=" else operator
    if variable == "Time" and operator != ">":
        raise ValueError("a time end must read 'Time > <duration>'")
    if variable == "Current" and _is_c_rate(raw_value):
        variable = "C-rate"  # "Current < C/20": a current end written as a C-rate
    value = _quantity(variable, raw_value, bracket_unit)
    if variable in ("Time", "Voltage") and value <= 0:
        raise ValueError(f"a {variable} end needs a positive value, got {value:g}")
    if variable in ("Current", "C-rate") and value < 0:
        raise ValueError(f"a {variable} end compares the magnitude; give a value >= 0, got {value:g}")
    return variable, operator, value


def _is_c_rate(raw_value: Any) -> bool:
    text = str(raw_value).strip()
    return text.upper().startswith("C/") or bool(re.fullmatch(r"[-+]?[\d.eE+-]+\s*C", text))


def _quantity(variable: str, raw_value: Any, bracket_unit: str) -> float:
    if isinstance(raw_value, bool) or raw_value is None:
        raise ValueError(f"the {variable} end value must be a number, got {raw_value!r}")
    if isinstance(raw_value, int | float):
        number, unit = float(raw_value), bracket_unit
    else:
        text = str(raw_value).strip()
        if variable == "C-rate" and text.upper().startswith("C/"):
            divisor = _quantity("C-rate", text[2:], "")
            if divisor <= 0:
                raise ValueError(f"cannot read {text!r} as a C-rate")
            number, unit = 1.0 / divisor, ""
        else:
            match = _VALUE_RE.match(text)
            if not match:
                raise ValueError(f"cannot read {text!r} as a {variable} value")
            number, unit = float(match.group("number")), match.group("unit") or bracket_unit
    scale = _UNITS[variable].get(unit.lower())
    if scale is None:
        raise ValueError(f"unknown unit {unit!r} for {variable}; expected one of "
                         f"{', '.join(u for u in _UNITS[variable] if u)}")
    if not math.isfinite(number):
        raise ValueError(f"the {variable} end value must be finite")
    return number * scale
