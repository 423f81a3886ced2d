"""Convert a UCP protocol into a cycler's own procedure file, and read it back to verify the conversion.

Targets written: ``maccor`` (a Maccor procedure, ``.000`` XML) and ``biologic_bttest`` (a BT-Lab ``Modulo
Bat`` settings file, ``.mps``). The other targets the client knows raise ``UnsupportedTarget``.

Example:
    >>> result = convert_protocol(ucp_text, "maccor", verify=True)
    >>> base64.b64decode(result["primary"]["content_base64"]).startswith(b"<?xml")
    True
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import yaml

from ..ucp import EndCondition, Protocol, Step, parse_protocol
from . import biologic, maccor

#: Every target ``ionworks`` 0.38 can ask for.
KNOWN_TARGETS = ("maccor", "arbin", "arbin_sdx", "neware", "biologic_bttest", "novonix")


class UnsupportedTarget(ValueError):
    """A conversion target the sandbox cannot write; names the ones it can.

    Example:
        >>> raise UnsupportedTarget("neware", ["biologic_bttest", "maccor"])
    """

    error_code = "NOT_IMPLEMENTED"

    def __init__(self, target: str, supported: Sequence[str]) -> None:
        self.target, self.supported = target, tuple(supported)
        known = "" if target in KNOWN_TARGETS else " (not a known target)"
        super().__init__(f"converting to {target!r}{known} is not supported by the sandbox; supported targets: "
                         f"{', '.join(self.supported)}")


class ProtocolConversionError(ValueError):
    """The protocol cannot be expressed in the target format, or did not survive the round trip.

    Example:
        >>> raise ProtocolConversionError("step 2: BT-Lab sequences take at most 3 limits", step=2)
    """

    error_code = "CONVERSION_ERROR"

    def __init__(self, message: str, step: int | None = None) -> None:
        self.step = step
        super().__init__(message)


@dataclass(frozen=True)
class _Format:
    extension: str
    media_type: str
    write: Callable[[Protocol, float | None, str], str]
    read: Callable[[str], list[Step]]
    native_c_rate: bool


_FORMATS = {
    "maccor": _Format(".000", "application/xml", maccor.write, maccor.read, native_c_rate=True),
    "biologic_bttest": _Format(".mps", "text/plain", biologic.write, biologic.read, native_c_rate=False),
}
SUPPORTED_TARGETS = tuple(sorted(_FORMATS))


def convert_protocol(
    protocol: str | Mapping[str, Any],
    target: str,
    filename_stem: str = "protocol",
    nominal_capacity_ah: float | None = None,
    verify: bool = False,
) -> dict[str, Any]:
    """``{"target", "primary": {"filename", "content_base64", "media_type"}, "assets": []}``.

    C-rates are written natively where the format has them (Maccor) and as currents through
    ``nominal_capacity_ah`` otherwise (BT-Lab). With ``verify`` the file is parsed back and compared step by
    step with the source. Raises ``UnsupportedTarget``, ``ProtocolError`` (bad UCP) or
    ``ProtocolConversionError``.

    Example:
        >>> convert_protocol(text, "biologic_bttest", nominal_capacity_ah=5.0)["primary"]["filename"]
        'protocol.mps'
    """
    fmt = _FORMATS.get(target)
    if fmt is None:
        raise UnsupportedTarget(target, SUPPORTED_TARGETS)
    text = protocol if isinstance(protocol, str) else yaml.safe_dump(dict(protocol), sort_keys=False)
    parsed = parse_protocol(text)
    if nominal_capacity_ah is not None:
        nominal_capacity_ah = _capacity(nominal_capacity_ah)
    expected = [_comparable(step, nominal_capacity_ah, fmt.native_c_rate, target) for step in parsed.steps]
    content = fmt.write(replace(parsed, steps=tuple(expected)), nominal_capacity_ah, filename_stem)
    if verify:
        _verify(expected, fmt.read(content), target)
    return {
        "target": target,
        "primary": {
            "filename": f"{filename_stem}{fmt.extension}",
            "content_base64": base64.b64encode(content.encode("utf-8")).decode("ascii"),
            "media_type": fmt.media_type,
        },
        "assets": [],
    }


def _capacity(value: Any) -> float:
    try:
        capacity = float(value)
    except (TypeError, ValueError):
        capacity = math.nan
    if isinstance(value, bool) or not (math.isfinite(capacity) and capacity > 0):
        raise ProtocolConversionError(f"nominal_capacity_ah must be a positive number, got {value!r}")
    return capacity


def _comparable(step: Step, capacity: float | None, native_c_rate: bool, target: str) -> Step:
    """The step as the target can hold it: C-rate ends (and C-rate steps without native C-rate) in amps."""

    def amps(c_rate: float, what: str) -> float:
        if capacity is None:
            raise ProtocolConversionError(f"step {step.number}: {what} uses a C-rate; {target} needs "
                                          "nominal_capacity_ah to write it as a current", step=step.number)
        return c_rate * capacity

    ends = tuple(EndCondition("Current", end.operator, amps(end.value, "an end condition"))
                 if end.variable == "C-rate" else end for end in step.ends)
    if step.mode == "C-rate" and not native_c_rate:
        return replace(step, mode="Current", value=amps(step.value, "the step"), ends=ends)
    return replace(step, ends=ends)


def _verify(expected: list[Step], produced: list[Step], target: str) -> None:
    for source, parsed in zip(expected, produced):
        if not _same(source, parsed):
            raise ProtocolConversionError(
                f"verify: step {source.number} changed in the {target} file: the protocol says "
                f"'{source.describe()}', the file reads back as '{parsed.describe()}'", step=source.number)
    if len(expected) != len(produced):
        first = min(len(expected), len(produced)) + 1
        raise ProtocolConversionError(f"verify: the {target} file holds {len(produced)} steps where the protocol "
                                      f"has {len(expected)} (first mismatch at step {first})", step=first)


def _same(a: Step, b: Step) -> bool:
    if (a.direction, a.mode, len(a.ends)) != (b.direction, b.mode, len(b.ends)):
        return False
    if (a.value is None) != (b.value is None) or (a.value is not None and not _close(a.value, b.value)):
        return False
    return all(x.variable == y.variable and x.operator == y.operator
               and _close(x.value, y.value, 5e-4 if x.variable == "Time" else 1e-12)
               for x, y in zip(_ordered(a.ends), _ordered(b.ends)))


def _ordered(ends: tuple[EndCondition, ...]) -> list[EndCondition]:
    return sorted(ends, key=lambda end: (end.variable, end.operator, end.value))


def _close(a: float, b: float, absolute: float = 1e-12) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=absolute)
