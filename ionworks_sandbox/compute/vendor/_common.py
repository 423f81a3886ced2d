"""What the vendor writers share: the conversion error that names a step, and checks of a step's end conditions.

Example:
    >>> ends = ends_by_variable(step, "neware", "rest", {"Time": ">"})
    >>> ends["Time"].value
    600.0
"""

from __future__ import annotations

from collections.abc import Mapping

from ..ucp import EndCondition, Step


class ProtocolConversionError(ValueError):
    """The protocol cannot be expressed in the target format, or did not survive the round trip.

    ``step`` is the UCP step number (1-based, counted through named groups), ``label`` its group name and
    ``line`` its line in the protocol text, when known.

    Example:
        >>> raise ProtocolConversionError("step 2: BT-Lab sequences take at most 3 limits", step=2)
    """

    error_code = "CONVERSION_ERROR"

    def __init__(self, message: str, step: int | None = None, label: str | None = None,
                 line: int | None = None) -> None:
        self.step, self.label, self.line = step, label, line
        super().__init__(message)


def where(step: Step) -> str:
    """``step 3 ('CV Charge', line 14)``: the step as the protocol author finds it.

    Example:
        >>> where(Step(2, "Rest", None, None, (), label="Relax", line=9))
        "step 2 ('Relax', line 9)"
    """
    details = [repr(step.label)] if step.label else []
    if step.line is not None:
        details.append(f"line {step.line}")
    return f"step {step.number}" + (f" ({', '.join(details)})" if details else "")


def cannot_write(step: Step, target: str, reason: str) -> ProtocolConversionError:
    """The error for a step ``target`` cannot express, naming the step, what it says and why.

    Example:
        >>> raise cannot_write(step, "neware", "a Neware rest step ends on time only")
    """
    return ProtocolConversionError(f"{where(step)}: {target} cannot express '{step.describe()}': {reason}",
                                   step=step.number, label=step.label, line=step.line)


def ends_by_variable(step: Step, target: str, kind: str,
                     allowed: Mapping[str, str | tuple[str, ...]]) -> dict[str, EndCondition]:
    """The step's end conditions keyed by variable, when each is one the ``kind`` of step has a field for.

    ``allowed`` maps a variable to the operator(s) the field means; a variable given twice, one without a
    field, or one compared the other way raise :func:`cannot_write`.

    Example:
        >>> ends_by_variable(step, "novonix", "constant-current charge", {"Voltage": ">", "Time": ">"})
        {'Voltage': EndCondition(variable='Voltage', operator='>', value=4.2)}
    """
    found: dict[str, EndCondition] = {}
    for end in step.ends:
        operators = allowed.get(end.variable)
        if operators is None:
            fields = ", ".join(f"{v} {'/'.join(o)}" for v, o in allowed.items()) or "none"
            raise cannot_write(step, target, f"a {kind} step has no field for a {end.variable} end "
                                             f"(its end fields: {fields})")
        if end.operator not in operators:
            raise cannot_write(step, target, f"a {kind} step ends on {end.variable} "
                                             f"{' or '.join(operators)} only, not '{end.describe()}'")
        if end.variable in found:
            raise cannot_write(step, target, f"a {kind} step holds one {end.variable} end; the step has two")
        found[end.variable] = end
    return found


def number(value: float) -> str:
    """A value written without float noise: ``format(value, ".12g")``.

    Example:
        >>> number(4.2 * 10000)
        '42000'
    """
    return format(value, ".12g")
