"""Novonix HPC protocols (``.pro2``): write steps as the bracketed protocol text, read them back.

The text follows the public example of a Novonix HPC protocol: the ``[Protocol]`` section that Novonix copies into
its data files, as in BatLabLancaster/preparenovonix ``example_data/example_data.csv`` (MIT): a ``Novonix HPC
Protocol File`` header with ``Version``, protocol operating and emergency limits, then blocks such as
``[Open circuit storage]`` (``Storage_time``), ``[Constant current charge]`` / ``[Constant current discharge]``
(``Charge_current``/``Discharge_current`` in A, ``Charge_voltage``/``Discharge_voltage`` in V) and ``[CC-CV
charge]`` (``Maximum_current``, ``Charge_voltage``), each with ``[Trip conditions]`` such as ``End step if step time
is longer than 10 hours``, ``End step if hold time is greater than 5 hours``, ``End step if absolute current is
less than 0.1 A`` and ``End step if voltage is less than 2.7 V``, and ``[Save conditions]``. ``.pro2`` is the
extension the Ionworks documentation names for Novonix protocol files.

A rest runs for its ``Storage_time`` and may trip on voltage; a CC step ends at its cut-off voltage and may trip on
step time. Novonix holds a voltage only as the CV phase of a CC-CV charge, so a CV charge is written together with
the CC charge just before it when that step ends only at the CV voltage, and read back as the two steps. Currents
are amps (C-rates are converted by the caller). Other steps raise :class:`ProtocolConversionError` naming the step.

Example:
    >>> steps = read(write(protocol, 5.0, "protocol"))
"""

from __future__ import annotations

import re

from ..ucp import EndCondition, Protocol, Step
from ._common import cannot_write, ends_by_variable, number

TARGET = "novonix"
_UNITS = {"hours": 3600.0, "hour": 3600.0, "minutes": 60.0, "minute": 60.0, "seconds": 1.0, "second": 1.0}
_BLOCKS = {"Open circuit storage": "End storage", "Constant current charge": "End charge",
           "Constant current discharge": "End discharge", "CC-CV charge": "End CCCV charge"}
_SKIPPED = {"Protocol operating limits": "End protocol operating limits",
            "Protocol emergency limits": "End protocol emergency limits",
            "Increment the cycle counter": "End increment"}
_TRIP_RE = re.compile(r"^\d+ End step if (?P<what>.+?) (?P<value>[-+\d.eE]+) (?P<unit>\S+)$")
_TRIPS = {"step time is longer than": ("Time", ">"), "hold time is greater than": ("Time", ">"),
          "absolute current is less than": ("Current", "<"), "voltage is less than": ("Voltage", "<"),
          "voltage is greater than": ("Voltage", ">")}


def write(protocol: Protocol, nominal_capacity_ah: float | None, filename_stem: str) -> str:
    """The protocol as Novonix HPC protocol text; C-rate steps must already be currents.

    Example:
        >>> write(protocol, 5.0, "cccv").splitlines()[0]
        'Novonix HPC Protocol File'
    """
    lines = ["Novonix HPC Protocol File", "Version:3.0.2.3", "[Protocol operating limits]",
             "[End protocol operating limits]", "[Protocol emergency limits]", "[End protocol emergency limits]"]
    steps = protocol.steps
    index = 0
    while index < len(steps):
        step = steps[index]
        follower = steps[index + 1] if index + 1 < len(steps) else None
        if follower is not None and _holds(step, follower):
            lines += _cc_cv(step, follower, protocol.period_s)
            index += 2
            continue
        lines += _block(step, protocol.period_s)
        index += 1
    return "\n".join(lines) + "\n"


def read(text: str) -> list[Step]:
    """The protocol steps of Novonix protocol text written by :func:`write` (a CC-CV charge reads as two steps).

    Example:
        >>> [s.mode for s in read(novonix_text)]
        ['Current', 'Voltage', 'Current']
    """
    lines = [line.strip()[1:-1] for line in text.splitlines() if line.strip().startswith("[")]
    steps: list[Step] = []
    index = 0
    while index < len(lines):
        name = lines[index]
        if name in _SKIPPED:
            index = lines.index(_SKIPPED[name], index) + 1
            continue
        if name not in _BLOCKS:
            raise ValueError(f"Novonix protocol: [{name}] has no UCP equivalent in the sandbox")
        end = lines.index(_BLOCKS[name], index)
        steps += _parse(name, lines[index + 1:end], len(steps) + 1)
        index = end + 1
    return steps


def _holds(cc: Step, cv: Step) -> bool:
    """Whether ``cv`` is the hold of a CC-CV charge started by ``cc``."""
    ends_at = [end for end in cc.ends if end.variable == "Voltage" and end.operator == ">"]
    return (cc.direction == cv.direction == "Charge" and cc.mode == "Current" and cv.mode == "Voltage"
            and len(cc.ends) == len(ends_at) == 1 and abs(ends_at[0].value - cv.value) < 1e-9)


def _block(step: Step, period_s: float) -> list[str]:
    if step.direction == "Rest":
        ends = ends_by_variable(step, TARGET, "Novonix open-circuit storage", {"Time": ">", "Voltage": ("<", ">")})
        if "Time" not in ends:
            raise cannot_write(step, TARGET, "a Novonix open-circuit storage runs for its Storage_time; give the "
                                             "step a time end")
        trips = [_trip("voltage is less than" if ends["Voltage"].operator == "<" else "voltage is greater than",
                       ends["Voltage"])] if "Voltage" in ends else []
        return ["[Open circuit storage]", f"   [Storage_time {_duration(ends['Time'].value)}]",
                *_sections(trips, period_s), "[End storage]"]
    if step.mode == "Current":
        kind = step.direction.lower()
        cut_off = ">" if step.direction == "Charge" else "<"
        ends = ends_by_variable(step, TARGET, f"Novonix constant-current {kind}", {"Voltage": cut_off, "Time": ">"})
        if "Voltage" not in ends:
            raise cannot_write(step, TARGET, f"a Novonix constant-current {kind} ends at its {step.direction}_voltage;"
                                             f" give the step a 'Voltage {cut_off} ...' end")
        trips = [_trip("step time is longer than", ends["Time"])] if "Time" in ends else []
        return [f"[Constant current {kind}]", f"   [{step.direction}_current {number(step.value)} A]",
                f"   [{step.direction}_voltage {number(ends['Voltage'].value)} V]", *_sections(trips, period_s),
                f"[End {kind}]"]
    if step.mode == "Voltage":
        raise cannot_write(step, TARGET, "Novonix holds a voltage only as the CV phase of a CC-CV charge: a CV "
                                         "charge must follow a CC charge that ends only at the same voltage")
    raise cannot_write(step, TARGET, f"constant-{str(step.mode).lower()} steps are not written to Novonix "
                                     "protocols by the sandbox (rest, CC and CC-CV charge are)")


def _cc_cv(cc: Step, cv: Step, period_s: float) -> list[str]:
    ends = ends_by_variable(cv, TARGET, "Novonix CC-CV hold", {"Current": "<", "Time": ">"})
    trips = []
    if "Time" in ends:
        trips.append(_trip("hold time is greater than", ends["Time"]))
    if "Current" in ends:
        trips.append(_trip("absolute current is less than", ends["Current"]))
    return ["[CC-CV charge]", f"   [Maximum_current {number(cc.value)} A]", f"   [Charge_voltage {number(cv.value)} V]",
            *_sections(trips, period_s), "[End CCCV charge]"]


def _trip(what: str, end: EndCondition) -> str:
    return f"{what} {_duration(end.value)}" if end.variable == "Time" else \
        f"{what} {number(end.value)} {'V' if end.variable == 'Voltage' else 'A'}"


def _sections(trips: list[str], period_s: float) -> list[str]:
    return ["   [Trip conditions]", *(f"      [{i} End step if {trip}]" for i, trip in enumerate(trips)),
            "   [End trip conditions]", "   [Save conditions]",
            f"      [0 Save data if \u2206T is greater than {number(period_s)} seconds]", "   [End save conditions]",
            "   [Operating limits]", "   [End operating limits]", "   [Emergency limits]", "   [End emergency limits]"]


def _duration(seconds: float) -> str:
    for unit, scale in (("hours", 3600.0), ("minutes", 60.0)):
        if seconds >= scale and abs(seconds / scale - round(seconds / scale)) < 1e-9:
            count = round(seconds / scale)
            return f"{count} {unit if count != 1 else unit[:-1]}"
    return f"{number(seconds)} seconds"


def _parse(name: str, body: list[str], first: int) -> list[Step]:
    values: dict[str, float] = {}
    trips: list[EndCondition] = []
    section = None
    for line in body:
        if line.startswith("End ") and line.endswith(("conditions", "limits")):
            section = None
        elif line in ("Trip conditions", "Save conditions", "Operating limits", "Emergency limits"):
            section = line
        elif section == "Trip conditions":
            trips.append(_parse_trip(name, line))
        elif section is None:
            key, _, rest = line.partition(" ")
            values[key] = _seconds(rest) if key == "Storage_time" else float(rest.split()[0])
    if name == "Open circuit storage":
        return [Step(first, "Rest", None, None, (EndCondition("Time", ">", values["Storage_time"]), *trips))]
    if name == "CC-CV charge":
        voltage = values["Charge_voltage"]
        cc = Step(first, "Charge", "Current", values["Maximum_current"], (EndCondition("Voltage", ">", voltage),))
        return [cc, Step(first + 1, "Charge", "Voltage", voltage, tuple(trips))]
    direction = "Charge" if name.endswith("charge") and "discharge" not in name else "Discharge"
    cut_off = EndCondition("Voltage", ">" if direction == "Charge" else "<", values[f"{direction}_voltage"])
    return [Step(first, direction, "Current", values[f"{direction}_current"], (cut_off, *trips))]


def _parse_trip(block: str, line: str) -> EndCondition:
    match = _TRIP_RE.match(line)
    variable_operator = _TRIPS.get(match.group("what")) if match else None
    if variable_operator is None:
        raise ValueError(f"Novonix [{block}]: trip condition {line!r} has no UCP equivalent")
    variable, operator = variable_operator
    value, unit = float(match.group("value")), match.group("unit")
    expected = {"Voltage": ("V",), "Current": ("A",), "Time": tuple(_UNITS)}[variable]
    if unit not in expected:
        raise ValueError(f"Novonix [{block}]: trip condition {line!r} has an unknown unit {unit!r}")
    return EndCondition(variable, operator, value * _UNITS[unit] if variable == "Time" else value)


def _seconds(text: str) -> float:
    value, _, unit = text.partition(" ")
    if unit not in _UNITS:
        raise ValueError(f"Novonix Storage_time {text!r}: unknown unit")
    return float(value) * _UNITS[unit]
