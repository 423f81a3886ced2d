"""Arbin MITS Pro schedules (``.sdu``, the MITS Pro 7 INI dialect): write steps and limits, read them back.

The layout follows the public schedule and converter of TRI-AMDD/beep: the template
``beep/protocol/schedule_templates/20170630-3_6C_9per_5C.sdu`` (``[Version Section]``, ``[Schedule]``,
``[Schedule_Step{i}]`` and ``[Schedule_Step{i}_Limit{j}]`` sections, CRLF lines), the blank step and limit in
``beep/protocol/protocol_schemas/arbin_schedule_schema.yaml`` and the mapping in ``beep/protocol/maccor_to_arbin.py``
(``m_szStepCtrlType`` ``Rest``, ``Current(A)``, ``C-Rate``, ``Voltage(V)``; discharge currents negative; limits
``PV_CHAN_Voltage``, ``PV_CHAN_Current`` (signed, so a discharge current end is negated and its comparison
flipped) and ``PV_CHAN_Step_Time``; a ``DV_Time`` log limit for the record period).

Every end condition is one step limit going to the next step (the last to ``End Test``). C-rates are written
natively. A ``Voltage(V)`` step has no charge/discharge direction of its own: it takes it from the sign of its
current limit, so a voltage step needs a current end. Constant-power steps are not written (the public schedules
show no power control type).

Example:
    >>> steps = read(write(protocol, None, "protocol"))
"""

from __future__ import annotations

import re
import uuid

from ..ucp import EndCondition, Protocol, Step
from ._common import cannot_write, number

TARGET = "arbin"
NEWLINE = "\r\n"
_CONTROLS = {"Current": "Current(A)", "C-rate": "C-Rate", "Voltage": "Voltage(V)"}
_MODES = {value: key for key, value in _CONTROLS.items()}
_LEFT = {"Voltage": "PV_CHAN_Voltage", "Current": "PV_CHAN_Current", "Time": "PV_CHAN_Step_Time"}
_VARIABLES = {value: key for key, value in _LEFT.items()}
_FLIP = {"<": ">", ">": "<"}
_STEP_BODY = ("m_szExtCtrlValue1", "m_szExtCtrlValue2", "m_szExtDef", "m_uStepCtrlTypeExtFlag", "m_szAddIn",
              "m_bSampleClockStretch", "m_szUnitType", "m_szExUnitType1", "m_bSynchronizedStart", "m_bAutoPidTips",
              "m_nExtra1", "m_szExtDef1", "m_bBurstModeEnable")
_STEP_DEFAULTS = {"m_szExtCtrlValue2": "0", "m_uStepCtrlTypeExtFlag": "0", "m_bSampleClockStretch": "0",
                  "m_bSynchronizedStart": "0", "m_bAutoPidTips": "0", "m_nExtra1": "0", "m_bBurstModeEnable": "0"}
_SECTION_RE = re.compile(r"^\[(?P<name>[^\]]+)\]$")


def write(protocol: Protocol, nominal_capacity_ah: float | None, filename_stem: str) -> str:
    """The protocol as an Arbin ``.sdu`` schedule (CRLF line endings).

    Example:
        >>> write(protocol, None, "cccv").splitlines()[0]
        '[Version Section]'
    """
    steps = [_step(step, index == len(protocol.steps) - 1, protocol.period_s)
             for index, step in enumerate(protocol.steps)]
    comment = f"{filename_stem}: converted from a UCP protocol"
    if nominal_capacity_ah is not None:
        comment += f"; nominal capacity {number(nominal_capacity_ah)} A.h"
    signature = uuid.uuid5(uuid.NAMESPACE_URL, f"ionworks-sandbox:{filename_stem}:{steps}")
    sections: list[tuple[str, dict[str, str]]] = [
        ("Version Section", {"Current_Version": "Schedule Version 7.00.13"}),
        ("Signature Section", {"Signature": "{" + str(signature).upper() + "}"}),
        ("Schedule", {
            "m_szCreator": "ionworks-sandbox", "m_szComments": comment, "m_uMaxTimesOfUnsafe": "3",
            "m_fMinDtSeconds": number(min(protocol.period_s, 5.0)), "m_bLogChanNormalData": "1",
            "m_bLogChanStatData": "1", "m_bLogChanAuxData": "0", "m_bCheckCurrentSafety": "0",
            "m_bCheckVoltageSafety": "0", "m_bCheckPowerSafety": "0", "m_uStepNum": str(len(steps)),
            "m_uFormulaNum": "0", "m_uPulseNum": "0", "m_uCVNum": "0", "m_uAddInNum": "0",
        }),
    ]
    for index, (body, limits) in enumerate(steps):
        sections.append((f"Schedule_Step{index}", body))
        sections += [(f"Schedule_Step{index}_Limit{slot}", limit) for slot, limit in enumerate(limits)]
    lines = []
    for name, fields in sections:
        lines += [f"[{name}]", *(f"{key}={value}" for key, value in fields.items())]
    return NEWLINE.join(lines) + NEWLINE


def read(text: str) -> list[Step]:
    """The protocol steps of an Arbin ``.sdu`` schedule written by :func:`write` (or a similar flat one).

    Example:
        >>> read(sdu_text)[0].mode
        'C-rate'
    """
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        match = _SECTION_RE.match(line.strip())
        if match:
            current = sections.setdefault(match.group("name"), {})
        elif current is not None and "=" in line:
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    if "Schedule" not in sections:
        raise ValueError("no [Schedule] section in the Arbin schedule")
    count = int(sections["Schedule"].get("m_uStepNum") or 0)
    steps = []
    for index in range(count):
        body = sections.get(f"Schedule_Step{index}")
        if body is None:
            raise ValueError(f"Arbin schedule: [Schedule_Step{index}] is missing")
        limits = [sections.get(f"Schedule_Step{index}_Limit{slot}", {})
                  for slot in range(int(body.get("m_uLimitNum") or 0))]
        steps.append(_parse(index, body, limits))
    return steps


def _step(step: Step, last: bool, period_s: float) -> tuple[dict[str, str], list[dict[str, str]]]:
    if step.mode == "Power":
        raise cannot_write(step, TARGET, "constant-power steps are not written to Arbin schedules by the sandbox "
                                         "(rest, current, C-rate and voltage control are)")
    sign = -1.0 if step.direction == "Discharge" else 1.0
    if step.direction == "Rest":
        control, value = "Rest", ""
    else:
        control = _CONTROLS[step.mode]
        value = number(step.value if step.mode == "Voltage" else sign * step.value)
    if step.direction == "Rest" and any(end.variable == "Current" for end in step.ends):
        raise cannot_write(step, TARGET, "Arbin limits compare the signed current (PV_CHAN_Current), and a rest "
                                         "step's current end has no charge or discharge sign")
    if step.mode == "Voltage" and not any(end.variable == "Current" for end in step.ends):
        raise cannot_write(step, TARGET, "an Arbin Voltage(V) step is a charge or a discharge only by the sign of "
                                         "its current limit; give the step a current end (e.g. 'Current < 0.05 A')")
    label = f"{step.number}-{step.label or step.direction}"
    body = {"m_uLimitNum": str(len(step.ends) + 1), "m_szLabel": label, "m_szStepCtrlType": control,
            "m_szCurrentRange": "Range1", "m_szVoltageRange": "High", "m_szCtrlValue": value,
            **{key: _STEP_DEFAULTS.get(key, "") for key in _STEP_BODY}}
    goto = "End Test" if last else "Next Step"
    limits = [_limit(True, goto, *_equation(end, sign)) for end in step.ends]
    limits.append(_limit(False, "Next Step", "DV_Time", ">=", number(period_s)))
    return body, limits


def _equation(end: EndCondition, sign: float) -> tuple[str, str, str]:
    if end.variable == "Current" and sign < 0:
        return _LEFT["Current"], _FLIP[end.operator], number(-end.value)
    return _LEFT[end.variable], end.operator, number(end.value)


def _limit(step_limit: bool, goto: str, left: str, compare: str, right: str) -> dict[str, str]:
    limit = {"m_bStepLimit": "1" if step_limit else "0", "m_bLogDataLimit": "1", "m_szGotoStep": goto,
             "Equation0_szLeft": left, "Equation0_szCompareSign": compare, "Equation0_szRight": right}
    for other in (1, 2):
        limit |= {f"Equation{other}_szLeft": "", f"Equation{other}_szCompareSign": "", f"Equation{other}_szRight": ""}
    return limit


def _parse(index: int, body: dict[str, str], limits: list[dict[str, str]]) -> Step:
    where = f"Arbin step {index} ({body.get('m_szLabel', '')!r})"
    control = body.get("m_szStepCtrlType", "")
    if control != "Rest" and control not in _MODES:
        raise ValueError(f"{where}: control type {control!r} has no UCP equivalent")
    signed: list[tuple[str, str, float]] = []
    for limit in limits:
        if limit.get("m_bStepLimit") != "1":
            continue
        if limit.get("m_szGotoStep") not in ("Next Step", "End Test"):
            raise ValueError(f"{where}: a limit going to {limit.get('m_szGotoStep')!r} has no UCP equivalent")
        if limit.get("Equation1_szLeft"):
            raise ValueError(f"{where}: a limit joining several equations has no UCP equivalent")
        variable = _VARIABLES.get(limit.get("Equation0_szLeft", ""))
        if variable is None:
            raise ValueError(f"{where}: limit on {limit.get('Equation0_szLeft')!r} has no UCP equivalent")
        compare = limit.get("Equation0_szCompareSign", "").replace("=", "")
        if compare not in _FLIP:
            raise ValueError(f"{where}: comparison {limit.get('Equation0_szCompareSign')!r} is not < or >")
        signed.append((variable, compare, float(limit.get("Equation0_szRight", "nan"))))
    if control == "Rest":
        direction, mode, value = "Rest", None, None
    else:
        mode, ctrl = _MODES[control], float(body.get("m_szCtrlValue", "nan"))
        currents = {value < 0 for variable, _, value in signed if variable == "Current"}
        negative = ctrl < 0 if mode != "Voltage" else currents == {True}
        if mode == "Voltage" and len(currents) != 1:
            raise ValueError(f"{where}: a Voltage(V) step needs current limits of one sign to tell its direction")
        direction, value = ("Discharge" if negative else "Charge"), abs(ctrl)
    ends = tuple(EndCondition(variable, _FLIP[compare] if variable == "Current" and right < 0 else compare,
                              abs(right)) for variable, compare, right in signed)
    label = body.get("m_szLabel", "").partition("-")[2] or None
    return Step(number=index + 1, direction=direction, mode=mode, value=value, ends=ends, label=label)
