"""BioLogic BT-Lab settings files (``.mps``, one ``Modulo Bat`` technique): write sequences, read them back.

Each step is one sequence (``Ns``): ``CC``, ``CV``, ``CP`` or ``Rest``, currents in amps (C-rates are
converted by the caller), up to three limits (``Ecell``, ``|I|``, ``Time``) that move to the next sequence.
The table is BT-Lab's fixed-width layout: a 20-character label column, then 20 characters per sequence.

The layout follows the public BT-Lab settings files of TRI-AMDD/beep (``beep/protocol/biologic_templates/
formationV1.mps`` and the ``SAMPLE_MB_TEXT`` file in ``beep/tests/test_files/biologic_mb_test_strs.py``: the
``BT-LAB SETTING FILE`` header, ``Technique : 1`` / ``Modulo Bat`` and the ``Ns``/``ctrl_type``/``lim{n}_*`` rows).

Example:
    >>> steps = read(write(protocol, 5.0, "protocol"))
"""

from __future__ import annotations

from ..ucp import EndCondition, Protocol, Step
from ._common import cannot_write

WIDTH = 20
MAX_LIMITS = 3
_CONTROL = {"Current": ("CC", "A"), "Voltage": ("CV", "V"), "Power": ("CP", "W")}
_LIMIT_TYPES = {"Voltage": ("Ecell", "V"), "Current": ("|I|", "A"), "Time": ("Time", "s")}
_UNIT_SCALE = {"A": 1.0, "mA": 1e-3, "µA": 1e-6, "uA": 1e-6, "V": 1.0, "mV": 1e-3, "W": 1.0, "mW": 1e-3,
               "s": 1.0, "mn": 60.0, "h": 3600.0, "d": 86400.0}


def write(protocol: Protocol, nominal_capacity_ah: float | None, filename_stem: str) -> str:
    """The protocol as a BT-Lab settings file; C-rate steps must already be currents.

    Example:
        >>> write(protocol, 5.0, "cccv").splitlines()[0]
        'BT-LAB SETTING FILE'
    """
    capacity_mah = "" if nominal_capacity_ah is None else f"{nominal_capacity_ah * 1000:.3f} mA.h"
    header = [
        "BT-LAB SETTING FILE", "", "Number of linked techniques : 1", "",
        f"Filename : C:\\Users\\Public\\Documents\\BT-Lab\\Data\\{filename_stem}.mps", "",
        "Device : BCS-805", "Ecell ctrl range : min = 0.00 V, max = 10.00 V", "Electrode material : ",
        f"Initial state : {_initial_state(protocol)}", "Electrolyte : ", "Comments : converted from a UCP protocol",
        "Mass of active material : 0.001 mg", " at x = 0.000", "Molecular weight of active material (at x = 0) : 0.001 g/mol",
        "Atomic weight of intercalated ion : 0.001 g/mol", "Acquisition started at : xo = 0.000",
        "Number of e- transfered per intercalated ion : 1", f"Battery capacity : {capacity_mah}",
        "Electrode surface area : 0.001 cm²", "Characteristic mass : 0.001 mg",
        "Cycle Definition : Charge/Discharge alternance", "Turn to OCV between techniques", "",
        "Technique : 1", "Modulo Bat",
    ]
    columns = []
    for index, step in enumerate(protocol.steps):
        if step.mode == "C-rate" or any(end.variable == "C-rate" for end in step.ends):
            raise cannot_write(step, "biologic_bttest", "BT-Lab needs C-rates as currents")
        if len(step.ends) > MAX_LIMITS:
            raise cannot_write(step, "biologic_bttest", f"a BT-Lab sequence takes at most {MAX_LIMITS} limits, the "
                                                        f"step has {len(step.ends)} end conditions")
        columns.append(_sequence(index, step, protocol.period_s, last=index == len(protocol.steps) - 1))
    rows = list(columns[0])
    table = [_cell(row) + "".join(_cell(column[row]) for column in columns) for row in rows]
    return "\n".join(header + table) + "\n"


def read(text: str) -> list[Step]:
    """The steps of a ``Modulo Bat`` technique written by :func:`write`.

    Example:
        >>> read(mps_text)[1].mode
        'Voltage'
    """
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("Ns"))
    except StopIteration:
        raise ValueError("no 'Ns' sequence table in the BT-Lab file") from None
    table: dict[str, list[str]] = {}
    for line in lines[start:]:
        if not line.strip():
            break
        cells = [line[i:i + WIDTH].strip() for i in range(0, len(line), WIDTH)]
        table[cells[0]] = cells[1:]
    steps = []
    for index in range(len(table["Ns"])):
        column = {key: (values[index] if index < len(values) else "") for key, values in table.items()}
        steps.append(_step(index + 1, column))
    return steps


def _sequence(index: int, step: Step, period_s: float, last: bool) -> dict[str, str]:
    if step.direction == "Rest":
        control, unit, value = "Rest", "", ""
    else:
        control, unit = _CONTROL[step.mode]
        sign = -1.0 if step.direction == "Discharge" and step.mode != "Voltage" else 1.0
        value = _number(sign * step.value)
    column = {
        "Ns": str(index), "ctrl_type": control, "Apply I/C": "I", "ctrl1_val": value, "ctrl1_val_unit": unit,
        "ctrl1_val_vs": "Ref" if control == "CV" else "<None>", "ctrl2_val": "", "ctrl2_val_unit": "",
        "ctrl2_val_vs": "", "ctrl3_val": "", "ctrl3_val_unit": "", "ctrl3_val_vs": "", "N": "1.00",
        "charge/discharge": "Discharge" if step.direction == "Discharge" else "Charge", "ctrl_seq": "0",
        "ctrl_repeat": "0", "ctrl_trigger": "Rising Edge", "ctrl_TO_t": "0.000", "ctrl_TO_t_unit": "s",
        "ctrl_Nd": "6", "ctrl_Na": "1", "ctrl_corr": "0", "lim_nb": str(len(step.ends)),
    }
    next_sequence = str(index + 1)
    for slot in range(1, MAX_LIMITS + 1):
        end = step.ends[slot - 1] if slot <= len(step.ends) else EndCondition("Time", ">", 0.0)
        kind, end_unit = _LIMIT_TYPES[end.variable]
        column |= {f"lim{slot}_type": kind, f"lim{slot}_comp": end.operator, f"lim{slot}_Q": "Q limit",
                   f"lim{slot}_value": _number(end.value), f"lim{slot}_value_unit": end_unit,
                   f"lim{slot}_action": "End technique" if last else "Next sequence", f"lim{slot}_seq": next_sequence}
    column |= {"rec_nb": "1", "rec1_type": "Time", "rec1_value": _number(period_s), "rec1_value_unit": "s",
               "E range min (V)": "0.000", "E range max (V)": "10.000", "I Range": "Auto", "I Range min": "Unset",
               "I Range max": "Unset", "I Range init": "Unset", "auto rest": "0", "Bandwidth": "5"}
    return column


def _step(number: int, column: dict[str, str]) -> Step:
    control = column["ctrl_type"]
    ends = []
    for slot in range(1, int(column.get("lim_nb") or 0) + 1):
        kind = column[f"lim{slot}_type"]
        variable = {"Ecell": "Voltage", "|I|": "Current", "I": "Current", "Time": "Time"}.get(kind)
        if variable is None:
            raise ValueError(f"BT-Lab sequence {number - 1}: limit type {kind!r} has no UCP equivalent")
        value = _value(column[f"lim{slot}_value"], column[f"lim{slot}_value_unit"])
        ends.append(EndCondition(variable, column[f"lim{slot}_comp"], abs(value)))
    if control == "Rest":
        return Step(number=number, direction="Rest", mode=None, value=None, ends=tuple(ends))
    mode = {"CC": "Current", "CV": "Voltage", "CP": "Power"}.get(control)
    if mode is None:
        raise ValueError(f"BT-Lab sequence {number - 1}: control {control!r} has no UCP equivalent")
    direction = "Discharge" if column["charge/discharge"] == "Discharge" else "Charge"
    value = abs(_value(column["ctrl1_val"], column["ctrl1_val_unit"]))
    return Step(number=number, direction=direction, mode=mode, value=value, ends=tuple(ends))


def _initial_state(protocol: Protocol) -> str:
    if protocol.initial_soc is not None:
        return f"SOC {protocol.initial_soc * 100:g} %"
    if protocol.initial_voltage is not None:
        return f"{protocol.initial_voltage:g} V"
    return ""


def _value(text: str, unit: str) -> float:
    if unit not in _UNIT_SCALE:
        raise ValueError(f"unknown BT-Lab unit {unit!r}")
    return float(text) * _UNIT_SCALE[unit]


def _number(value: float) -> str:
    return format(value, ".12g")


def _cell(text: str) -> str:
    return text.ljust(WIDTH)
