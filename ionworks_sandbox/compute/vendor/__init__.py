"""Convert a UCP protocol into a cycler's own procedure file, and read it back to verify the conversion.

Targets written, one module each: ``maccor`` (Maccor procedure, ``.000`` XML), ``neware`` (BTS step file,
``.xml``), ``arbin`` (MITS Pro schedule, ``.sdu``), ``biologic_bttest`` (BT-Lab ``Modulo Bat`` settings,
``.mps``) and ``novonix`` (HPC protocol, ``.pro2``). ``arbin_sdx`` (the MITS Pro 8 ``.sdx`` dialect) and unknown
names raise ``UnsupportedTarget``. A step a target cannot express raises ``ProtocolConversionError`` naming the
step and the reason; nothing is approximated.

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
from . import arbin, biologic, maccor, neware, novonix
from ._common import ProtocolConversionError, where

__all__ = ["KNOWN_TARGETS", "SUPPORTED_TARGETS", "ProtocolConversionError", "UnsupportedTarget", "convert_protocol"]

#: Every target ``ionworks`` 0.38 can ask for.
KNOWN_TARGETS = ("maccor", "arbin", "arbin_sdx", "neware", "biologic_bttest", "novonix")


class UnsupportedTarget(ValueError):
    """A conversion target the sandbox cannot write; names the ones it can.

    Example:
        >>> raise UnsupportedTarget("arbin_sdx", ["arbin", "maccor"])
    """

    error_code = "NOT_IMPLEMENTED"

    def __init__(self, target: str, supported: Sequence[str]) -> None:
        self.target, self.supported = target, tuple(supported)
        known = _NOTES.get(target, "") if target in KNOWN_TARGETS else " (not a known target)"
        super().__init__(f"converting to {target!r}{known} is not supported by the sandbox; supported targets: "
                         f"{', '.join(self.supported)}")


_NOTES = {"arbin_sdx": " (the MITS Pro 8 .sdx dialect; 'arbin' writes the MITS Pro 7 .sdu schedule)"}


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
    "neware": _Format(".xml", "application/xml", neware.write, neware.read, native_c_rate=False),
    "arbin": _Format(".sdu", "text/plain", arbin.write, arbin.read, native_c_rate=True),
    "novonix": _Format(".pro2", "text/plain", novonix.write, novonix.read, native_c_rate=False),
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

    C-rates are written natively where the format has them (Maccor, Arbin) and as currents through
    ``nominal_capacity_ah`` otherwise (Neware, BT-Lab, Novonix). With ``verify`` the file is parsed back and
    compared step by step with the source. Raises ``UnsupportedTarget``, ``ProtocolError`` (bad UCP) or
    ``ProtocolConversionError`` (a step the target cannot express, named, or a failed round trip).

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
        try:
            produced = fmt.read(content)
        except ValueError as exc:
            raise ProtocolConversionError(f"verify: the {target} file does not read back: {exc}") from exc
        _verify(expected, produced, target)
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
            raise ProtocolConversionError(f"{where(step)}: {what} uses a C-rate; {target} needs "
                                          "nominal_capacity_ah to write it as a current", step=step.number,
                                          label=step.label, line=step.line)
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
                f"verify: {where(source)} changed in the {target} file: the protocol says "
                f"'{source.describe()}', the file reads back as '{parsed.describe()}'", step=source.number,
                label=source.label, line=source.line)
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
