"""Neware BTS step files (``.xml``): write protocol steps as ``Step_Info`` steps and read them back.

The layout follows public examples of BTS 8.0 step files: the Neware writer of EmpaEconversion/aurora-unicycler
(``aurora_unicycler/_formats/neware.py``: ``<root><config type="Step File" version="17">`` with ``Head_Info``,
``Whole_Prt`` and ``Step_Info``; ``Step_Type`` 1 CC Chg, 2 CC DChg, 3 CV Chg, 19 CV DChg, 4 Rest, 6 End; ``Curr``
and ``Stop_Curr`` in mA, ``Volt`` and ``Stop_Volt`` in 0.1 mV, ``Time`` in ms, ``MultCap`` in mA.s, ``RateType``
103 for absolute currents) and BTS Client 8.0 step files published in public lab-automation repositories with
the same ``Limit/Main`` fields.

Each step carries the fields its type has: a CC step ``Curr`` with ``Stop_Volt`` and ``Time``; a CV step ``Volt``
with ``Stop_Curr`` and ``Time`` (and ``Curr``, the current limit, from a CC step just before it that ends at the
same voltage); a rest ``Time`` only. Currents are absolute (C-rates are converted by the caller). A step that
needs a field the type lacks raises :class:`ProtocolConversionError` naming the step; constant-power steps are not
written (no public step file shows their fields).

Example:
    >>> steps = read(write(protocol, 5.0, "protocol"))
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from xml.dom import minidom

from ..ucp import EndCondition, Protocol, Step
from ._common import cannot_write, ends_by_variable, number

TARGET = "neware"
_CC = {"Charge": "1", "Discharge": "2"}
_CV = {"Charge": "3", "Discharge": "19"}
REST, END, CYCLE = "4", "6", "5"
_KINDS = {"1": ("Charge", "Current"), "2": ("Discharge", "Current"), "3": ("Charge", "Voltage"),
          "19": ("Discharge", "Voltage"), "4": ("Rest", None)}
_FIELDS = {"Current": {"Curr", "Rate", "Time", "Stop_Volt"},
           "Voltage": {"Volt", "Curr", "Rate", "Time", "Stop_Curr", "Stop_Rate"}, None: {"Time"}}


def write(protocol: Protocol, nominal_capacity_ah: float | None, filename_stem: str) -> str:
    """The protocol as a Neware step file; C-rate steps must already be currents.

    Example:
        >>> write(protocol, 5.0, "cccv").splitlines()[1]
        '<root>'
    """
    steps = [_step(step, protocol.steps[index - 1] if index else None) for index, step in enumerate(protocol.steps)]
    root = ET.Element("root")
    config = ET.SubElement(root, "config", type="Step File", version="17",
                           client_version="BTS Client 8.0.0.478(2024.06.24)(R3)",
                           Guid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"ionworks-sandbox:{filename_stem}:{steps}")))
    head = ET.SubElement(config, "Head_Info")
    ET.SubElement(head, "Operate", Value="66")
    ET.SubElement(head, "Scale", Value="1")
    ET.SubElement(head, "Start_Step", Value="1", Hide_Ctrl_Step="0")
    ET.SubElement(head, "Creator", Value="ionworks-sandbox")
    ET.SubElement(head, "Remark", Value=f"{filename_stem}: converted from a UCP protocol")
    ET.SubElement(head, "RateType", Value="103")
    if nominal_capacity_ah is not None:
        ET.SubElement(head, "MultCap", Value=number(nominal_capacity_ah * 3.6e6))
    whole = ET.SubElement(config, "Whole_Prt")
    ET.SubElement(ET.SubElement(ET.SubElement(whole, "Record"), "Main"), "Time", Value=number(protocol.period_s * 1000))
    info = ET.SubElement(config, "Step_Info", Num=str(len(steps) + 1))
    for number_, (step_type, fields) in enumerate(steps, start=1):
        element = ET.SubElement(info, f"Step{number_}", Step_ID=str(number_), Step_Type=step_type)
        main = ET.SubElement(ET.SubElement(element, "Limit"), "Main")
        for name, value in fields:
            ET.SubElement(main, name, Value=number(value))
    ET.SubElement(info, f"Step{len(steps) + 1}", Step_ID=str(len(steps) + 1), Step_Type=END)
    ET.SubElement(ET.SubElement(config, "SMBUS"), "SMBUS_Info", Num="0", AdjacentInterval="0")
    text = minidom.parseString(ET.tostring(root, encoding="unicode")).toprettyxml(indent="  ", encoding="utf-8")
    return text.decode("utf-8")


def read(text: str) -> list[Step]:
    """The protocol steps of a Neware step file written by :func:`write` (or a similar flat step file).

    Example:
        >>> read(xml_text)[0].direction
        'Charge'
    """
    info = ET.fromstring(text.encode("utf-8")).find("config/Step_Info")
    if info is None:
        raise ValueError("no config/Step_Info in the Neware step file")
    elements = sorted((e for e in info if e.tag.startswith("Step")), key=lambda e: int(e.get("Step_ID", "0")))
    steps: list[Step] = []
    for element in elements:
        step_type = element.get("Step_Type", "")
        if step_type == END:
            break
        if step_type not in _KINDS:
            kind = "a Cycle (loop) step" if step_type == CYCLE else f"Step_Type {step_type!r}"
            raise ValueError(f"Neware step {element.get('Step_ID')}: {kind} has no UCP equivalent in the sandbox")
        steps.append(_parse(len(steps) + 1, step_type, element))
    return steps


def _step(step: Step, previous: Step | None) -> tuple[str, list[tuple[str, float]]]:
    if step.direction == "Rest":
        ends = ends_by_variable(step, TARGET, "Neware rest", {"Time": ">"})
        if "Time" not in ends:
            raise cannot_write(step, TARGET, "a Neware rest step ends on time only; give it a time end")
        return REST, [("Time", ends["Time"].value * 1000)]
    if step.mode == "Current":
        stop = ">" if step.direction == "Charge" else "<"
        ends = ends_by_variable(step, TARGET, f"Neware CC {step.direction.lower()}", {"Voltage": stop, "Time": ">"})
        fields = [("Curr", step.value * 1000)]
        fields += [("Time", ends["Time"].value * 1000)] if "Time" in ends else []
        fields += [("Stop_Volt", ends["Voltage"].value * 10000)] if "Voltage" in ends else []
        return _CC[step.direction], fields
    if step.mode == "Voltage":
        ends = ends_by_variable(step, TARGET, f"Neware CV {step.direction.lower()}", {"Current": "<", "Time": ">"})
        fields = [("Volt", step.value * 10000)]
        fields += [("Time", ends["Time"].value * 1000)] if "Time" in ends else []
        fields += [("Stop_Curr", ends["Current"].value * 1000)] if "Current" in ends else []
        limit = _current_limit(step, previous)
        fields += [("Curr", limit * 1000)] if limit is not None else []
        return _CV[step.direction], fields
    raise cannot_write(step, TARGET, f"constant-{str(step.mode).lower()} steps are not written to Neware step "
                                     "files by the sandbox (CC, CV and rest are)")


def _current_limit(step: Step, previous: Step | None) -> float | None:
    """A CV step's current limit: the current of the CC step just before it that ends at the same voltage."""
    if previous is None or previous.mode != "Current" or previous.direction != step.direction:
        return None
    ends_at = [end.value for end in previous.ends if end.variable == "Voltage"]
    return previous.value if ends_at and abs(ends_at[0] - step.value) < 1e-9 else None


def _parse(number_: int, step_type: str, element: ET.Element) -> Step:
    direction, mode = _KINDS[step_type]
    fields = {}
    for field in element.iterfind("Limit/Main/*"):
        if field.tag not in _FIELDS[mode]:
            raise ValueError(f"Neware step {number_}: limit {field.tag!r} has no UCP equivalent on this step type")
        fields[field.tag] = float(field.get("Value", "nan"))
    ends = []
    if "Time" in fields:
        ends.append(EndCondition("Time", ">", fields["Time"] / 1000))
    if "Stop_Volt" in fields:
        ends.append(EndCondition("Voltage", ">" if direction == "Charge" else "<", fields["Stop_Volt"] / 10000))
    if "Stop_Curr" in fields:
        ends.append(EndCondition("Current", "<", fields["Stop_Curr"] / 1000))
    if mode is None:
        return Step(number=number_, direction="Rest", mode=None, value=None, ends=tuple(ends))
    control = "Curr" if mode == "Current" else "Volt"
    if control not in fields:
        raise ValueError(f"Neware step {number_}: Step_Type {step_type} has no {control} value")
    value = fields[control] / (1000 if mode == "Current" else 10000)
    return Step(number=number_, direction=direction, mode=mode, value=value, ends=tuple(ends))
