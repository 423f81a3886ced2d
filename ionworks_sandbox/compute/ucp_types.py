"""The typed form of a UCP protocol and the errors that say where a protocol is wrong.

Example:
    >>> Step(1, "Discharge", "C-rate", 1.0, (EndCondition("Voltage", "<", 2.5),)).describe()
    'Discharge at 1C until Voltage < 2.5 V'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Direction = Literal["Charge", "Discharge", "Rest"]
Mode = Literal["C-rate", "Current", "Voltage", "Power"]
DEFAULT_PERIOD_S = 60.0


class ProtocolError(ValueError):
    """A UCP protocol that cannot be read; says where: step number, field and line.

    Example:
        >>> raise ProtocolError("missing field 'mode'", step=2, line=7)
    """

    error_code = "INVALID_PROTOCOL"

    def __init__(self, message: str, *, step: int | None = None, field: str | None = None,
                 line: int | None = None, label: str | None = None) -> None:
        self.reason, self.step, self.field, self.line = message, step, field, line
        where = []
        if step is not None:
            where.append(f"step {step}" + (f" ({label!r})" if label else ""))
        elif field is not None and field.startswith("global"):
            where.append("global")
        if field is not None:
            where.append(f"field {field.removeprefix('global.')!r}")
        if line is not None:
            where.append(f"line {line}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class MissingInputError(ProtocolError):
    """An ``input["name"]`` placeholder with no value in ``experiment_parameters``.

    Example:
        >>> raise MissingInputError("C-rate", step=1, field="value")
    """

    def __init__(self, name: str, **where: Any) -> None:
        self.name = name
        super().__init__(f"protocol input {name!r} is not set; give it in experiment_parameters", **where)


@dataclass(frozen=True)
class EndCondition:
    """``variable operator value``: Voltage [V], Current [A] (magnitude), Time [s] or C-rate [1/h]."""

    variable: Literal["Voltage", "Current", "Time", "C-rate"]
    operator: Literal["<", ">"]
    value: float

    def describe(self) -> str:
        unit = {"Voltage": " V", "Current": " A", "Time": " s", "C-rate": "C"}[self.variable]
        return f"{self.variable} {self.operator} {self.value:g}{unit}"


@dataclass(frozen=True)
class Step:
    """One protocol step. ``value`` is a magnitude (C, A, V, W); ``direction`` gives the sign."""

    number: int
    direction: Direction
    mode: Mode | None
    value: float | None
    ends: tuple[EndCondition, ...]
    label: str | None = None
    line: int | None = field(default=None, compare=False)

    def describe(self) -> str:
        unit = {"C-rate": "C", "Current": " A", "Voltage": " V", "Power": " W"}
        control = "Rest" if self.direction == "Rest" else f"{self.direction} at {self.value:g}{unit[self.mode]}"
        return f"{control} until " + " or ".join(end.describe() for end in self.ends)


@dataclass(frozen=True)
class Protocol:
    """A parsed protocol: steps in run order plus the initial state (SOC fraction or voltage) and °C."""

    steps: tuple[Step, ...]
    initial_soc: float | None = None
    initial_voltage: float | None = None
    temperature_c: float | None = None
    period_s: float = DEFAULT_PERIOD_S
