"""Maccor procedure files (``.000``, XML): write protocol steps as ``TestStep``s and read them back.

Each step becomes a ``Charge``/``Dischrge``/``Rest`` test step with ``Current``, ``C-Rate``, ``Voltage`` or
``Power`` mode; its end conditions become ``EndEntry``s that go to the next step; a final ``End`` step closes
the procedure. The UCP group name is kept as the step note.

The layout follows the public Maccor procedures of TRI-AMDD/beep (``beep/protocol/procedure_templates/EXP.000``
and ``diagnosticV5.000``: the ``maccor-application`` processing instruction, ``BuildTestVersion`` 1.5.7006.32043,
``BTVersion`` 11, padded ``StepType``/``StepMode``/``EndType`` values and ``hh:mm:ss`` step times) and the
procedure handling in ``beep/protocol/maccor.py``.

Example:
    >>> steps = read(write(protocol, None, "protocol"))
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

from ..ucp import EndCondition, Protocol, Step

_STEP_TYPES = {"Charge": "Charge  ", "Discharge": "Dischrge", "Rest": "  Rest  "}
_MODES = {"Current": "Current ", "C-rate": "C-Rate  ", "Voltage": "Voltage ", "Power": "Power   "}
_END_TYPES = {"Voltage": "Voltage ", "Current": "Current ", "Time": "StepTime"}
_OPERATORS = {"<": "<= ", ">": ">= "}


def write(protocol: Protocol, nominal_capacity_ah: float | None, filename_stem: str) -> str:
    """The procedure as Maccor XML text.

    Example:
        >>> write(protocol, 5.0, "cccv").startswith('<?xml version="1.0"')
        True
    """
    end_step = len(protocol.steps) + 1
    desc = f"{filename_stem}: converted from a UCP protocol"
    if nominal_capacity_ah is not None:
        desc += f"; nominal capacity {_number(nominal_capacity_ah)} A.h"
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<?maccor-application progid="Maccor Procedure File"?>',
        "<MaccorTestProcedure>",
        "  <header>",
        "    <BuildTestVersion>",
        "      <major>1</major>", "      <minor>5</minor>", "      <release>7006</release>", "      <build>32043</build>",
        "    </BuildTestVersion>",
        "    <FileFormatVersion>", "      <BTVersion>11</BTVersion>", "    </FileFormatVersion>",
        "    <ProcDesc>", f"      <desc>{escape(desc)}</desc>", "    </ProcDesc>",
        "  </header>",
        "  <ProcSteps>",
    ]
    for step in protocol.steps:
        lines += _test_step(step, protocol.period_s, end_step)
    lines += _test_step(None, protocol.period_s, end_step)
    lines += ["  </ProcSteps>", "</MaccorTestProcedure>", ""]
    return "\n".join(lines)


def read(text: str) -> list[Step]:
    """The protocol steps of a Maccor procedure written by :func:`write` (or a similar flat procedure).

    Example:
        >>> read(xml_text)[0].direction
        'Charge'
    """
    root = ET.fromstring(text.encode("utf-8"))
    steps: list[Step] = []
    for element in root.iter("TestStep"):
        kind = (element.findtext("StepType") or "").strip()
        if kind == "End":
            break
        direction = {"Charge": "Charge", "Dischrge": "Discharge", "Rest": "Rest"}.get(kind)
        if direction is None:
            raise ValueError(f"Maccor step {len(steps) + 1}: step type {kind!r} has no UCP equivalent")
        mode_text = (element.findtext("StepMode") or "").strip()
        mode = {"Current": "Current", "C-Rate": "C-rate", "Voltage": "Voltage", "Power": "Power"}.get(mode_text)
        value = (element.findtext("StepValue") or "").strip()
        ends = tuple(_end(entry) for entry in element.iter("EndEntry"))
        note = (element.findtext("StepNote") or "").strip() or None
        steps.append(Step(number=len(steps) + 1, direction=direction, mode=None if direction == "Rest" else mode,
                          value=None if direction == "Rest" else float(value), ends=ends, label=note))
    return steps


def _test_step(step: Step | None, period_s: float, end_step: int) -> list[str]:
    if step is None:
        kind, mode, value, ends, note = "  End   ", "        ", "", [], ""
    else:
        kind = _STEP_TYPES[step.direction]
        mode = "        " if step.direction == "Rest" else _MODES[step.mode]
        value = "" if step.value is None else _number(step.value)
        goto = f"{min(step.number + 1, end_step):03d}"
        ends = [_end_entry(end, goto) for end in step.ends]
        note = step.label or ""
    lines = ["    <TestStep>", f"      <StepType>{kind}</StepType>", f"      <StepMode>{mode}</StepMode>",
             f"      <StepValue>{value}</StepValue>", "      <Limits/>"]
    lines += ["      <Ends>", *[line for entry in ends for line in entry], "      </Ends>"] if ends else ["      <Ends/>"]
    if step is None:
        lines.append("      <Reports/>")
    else:
        lines += ["      <Reports>", "        <ReportEntry>", "          <ReportType>StepTime</ReportType>",
                  f"          <Value>{_duration(period_s)}</Value>", "        </ReportEntry>", "      </Reports>"]
    active = step is not None
    lines += [f"      <Range>{'4' if active else ''}</Range>",
              *[f"      <Option{i}>{'N' if active else ''}</Option{i}>" for i in (1, 2, 3)],
              f"      <StepNote>{escape(note)}</StepNote>", "    </TestStep>"]
    return lines


def _end_entry(end: EndCondition, goto: str) -> list[str]:
    value = _duration(end.value) if end.variable == "Time" else _number(end.value)
    operator = " = " if end.variable == "Time" else _OPERATORS[end.operator]
    return ["        <EndEntry>", f"          <EndType>{_END_TYPES[end.variable]}</EndType>",
            "          <SpecialType> </SpecialType>", f"          <Oper>{escape(operator)}</Oper>",
            f"          <Step>{goto}</Step>", f"          <Value>{value}</Value>", "        </EndEntry>"]


def _end(entry: ET.Element) -> EndCondition:
    kind = (entry.findtext("EndType") or "").strip()
    operator = (entry.findtext("Oper") or "").strip()
    value = (entry.findtext("Value") or "").strip()
    if kind == "StepTime":
        return EndCondition("Time", ">", _seconds(value))
    variable = {"Voltage": "Voltage", "Current": "Current"}.get(kind)
    if variable is None or operator not in ("<=", ">=", "<", ">"):
        raise ValueError(f"Maccor end {kind!r} {operator!r} has no UCP equivalent")
    return EndCondition(variable, operator[0], abs(float(value)))


def _number(value: float) -> str:
    return format(value, ".12g")


def _duration(seconds: float) -> str:
    hours, rest = divmod(seconds, 3600.0)
    minutes, secs = divmod(rest, 60.0)
    text = f"{int(hours):02d}:{int(minutes):02d}:{secs:06.3f}".rstrip("0").rstrip(".")
    return text if not text.endswith(":") else text + "00"


def _seconds(text: str) -> float:
    parts = [float(p) for p in text.split(":")]
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60.0 + part
    if not math.isfinite(seconds):
        raise ValueError(f"Maccor step time {text!r} is not a duration")
    return seconds
