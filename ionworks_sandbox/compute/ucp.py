"""Universal Cycler Protocol (UCP): parse the YAML into typed steps, fill ``input["..."]`` placeholders.

Two step forms are read, and may be mixed:

- flat: ``{direction: Discharge, mode: C-rate, value: 1, ends: [{variable: Voltage [V], value: 2.5}]}``
- keyed: ``{Charge: {mode: C-rate, value: 1, ends: ["Voltage > 4.2"]}}``, optionally inside a named group
  ``{CC Charge: [<steps>]}``; the group name becomes the steps' ``label``.

End conditions are ``{variable, value[, operator]}`` mappings or strings such as ``"Voltage > 4.2"``,
``"Current < 50 mA"``, ``"Time > 1 h"`` or ``"C-rate < C/20"``; ``duration`` on a step is a time end.
Values are normalised to V, A, s and 1/h.

Example:
    >>> protocol = parse_protocol(text, {"C-rate": 0.5})
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .ucp_ends import END_FIELDS, parse_end_mapping, parse_end_string, time_end
from .ucp_pybamm import to_pybamm_experiment
from .ucp_types import (
    DEFAULT_PERIOD_S,
    Direction,
    EndCondition,
    MissingInputError,
    Mode,
    Protocol,
    ProtocolError,
    Step,
)

__all__ = [
    "EndCondition", "MissingInputError", "Protocol", "ProtocolError", "Step", "find_input_references",
    "parse_protocol", "to_pybamm_experiment", "validate_protocol",
]

DIRECTIONS: tuple[Direction, ...] = ("Charge", "Discharge", "Rest")
MODES: tuple[Mode, ...] = ("C-rate", "Current", "Voltage", "Power")
_MODE_ALIASES = {"c-rate": "C-rate", "crate": "C-rate", "c rate": "C-rate", "c_rate": "C-rate",
                 "current": "Current", "voltage": "Voltage", "power": "Power"}
_STEP_FIELDS = ("mode", "value", "ends", "duration")
_GLOBAL_FIELDS = ("initial_soc", "initial_state_type", "initial_state_value", "temperature",
                  "initial_temperature", "resolution")
_INPUT_RE = re.compile(r"""input\[\s*(["'])(?P<name>.+?)\1\s*\]""")


def find_input_references(text: str) -> list[str]:
    """Names used as ``input["name"]`` in the protocol text, unique, in order of first appearance.

    Example:
        >>> find_input_references('value: input["C-rate"]')
        ['C-rate']
    """
    return list(dict.fromkeys(m.group("name") for m in _INPUT_RE.finditer(text)))


def validate_protocol(text: str) -> dict[str, Any]:
    """``{"valid": True}`` or ``{"valid": False, "error": "<where>: <problem>"}``; inputs count as set.

    Example:
        >>> validate_protocol("steps: []")["valid"]
        False
    """
    try:
        parse_protocol(text, {name: 1.0 for name in find_input_references(text)})
    except ProtocolError as exc:
        return {"valid": False, "error": str(exc)}
    return {"valid": True}


def parse_protocol(text: str, experiment_parameters: Mapping[str, Any] | None = None) -> Protocol:
    """Parse UCP YAML, filling placeholders from ``experiment_parameters``.

    The reserved keys ``initial_soc`` (fraction) and ``initial_temperature`` (°C) override the
    protocol's ``global`` section, as on the Ionworks server.

    Example:
        >>> parse_protocol(text, {"Initial SOC": 1.0}).steps[0].mode
        'C-rate'
    """
    params = dict(experiment_parameters or {})
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProtocolError(f"not valid YAML: {problem}", line=mark.line + 1 if mark else None) from None
    finally:
        loader.dispose()
    reader = _Reader(loader, params)
    protocol = reader.protocol(root)
    if "initial_soc" in params:
        soc = _number(params["initial_soc"], {"field": "initial_soc"}, "experiment parameter")
        protocol = replace(protocol, initial_soc=_soc_fraction(soc, {"field": "initial_soc"}), initial_voltage=None)
    if "initial_temperature" in params:
        temperature = _number(params["initial_temperature"], {"field": "initial_temperature"}, "experiment parameter")
        protocol = replace(protocol, temperature_c=temperature)
    return protocol


def _number(value: Any, where: dict[str, Any], what: str = "value") -> float:
    if isinstance(value, bool) or value is None:
        raise ProtocolError(f"{what} must be a number, got {value!r}", **where)
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ProtocolError(f"{what} must be a number, got {value!r}", **where) from None
    if not math.isfinite(number):
        raise ProtocolError(f"{what} must be finite, got {value!r}", **where)
    return number


def _soc_fraction(value: float, where: dict[str, Any]) -> float:
    if not 0.0 <= value <= 1.0:
        raise ProtocolError(f"initial_soc must be a fraction between 0 and 1, got {value:g} "
                            "(for percent use initial_state_type: soc_percentage)", **where)
    return value


class _Reader:
    """Walks the YAML node tree so every problem can name its line."""

    def __init__(self, loader: yaml.SafeLoader, params: dict[str, Any]) -> None:
        self.loader, self.params, self.count = loader, params, 0

    def value(self, node: Node, where: dict[str, Any]) -> Any:
        if not isinstance(node, ScalarNode):
            raise ProtocolError("expected a single value, not a list or mapping", **where)
        value = self.loader.construct_object(node)
        if not isinstance(value, str):
            return value
        whole = _INPUT_RE.fullmatch(value.strip())
        if whole:
            return self.lookup(whole.group("name"), where)
        return _INPUT_RE.sub(lambda m: str(self.lookup(m.group("name"), where)), value)

    def lookup(self, name: str, where: dict[str, Any]) -> Any:
        if name not in self.params:
            raise MissingInputError(name, **where)
        return self.params[name]

    def mapping(self, node: Node, where: dict[str, Any], what: str) -> list[tuple[str, Node, int]]:
        if not isinstance(node, MappingNode):
            raise ProtocolError(f"{what} must be a mapping", **where)
        entries = []
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node)
            if not isinstance(key, str):
                raise ProtocolError(f"{what} keys must be names, got {key!r}", **{**where, "line": _line(key_node)})
            entries.append((key, value_node, _line(key_node)))
        return entries

    def protocol(self, root: Node | None) -> Protocol:
        if root is None:
            raise ProtocolError("the protocol is empty; it needs a 'steps' list")
        settings: dict[str, Any] = {}
        steps: list[Step] = []
        for key, node, line in self.mapping(root, {"line": _line(root)}, "the protocol"):
            if key == "global":
                settings = self.global_section(node, line)
            elif key == "steps":
                if not isinstance(node, SequenceNode) or not node.value:
                    raise ProtocolError("'steps' must be a non-empty list", field="steps", line=line)
                steps = self.steps(node, None)
            elif key == "safety_limits":
                raise ProtocolError("safety_limits are not supported by the sandbox", field="safety_limits", line=line)
            else:
                raise ProtocolError(f"unknown top-level key {key!r}; expected 'global' and 'steps'", line=line)
        if not steps:
            raise ProtocolError("the protocol has no 'steps' list", line=_line(root))
        return Protocol(steps=tuple(steps), **settings)

    def global_section(self, node: Node, line: int) -> dict[str, Any]:
        raw: dict[str, tuple[Any, dict[str, Any]]] = {}
        for key, value_node, key_line in self.mapping(node, {"field": "global", "line": line}, "'global'"):
            where = {"field": f"global.{key}", "line": key_line}
            if key not in _GLOBAL_FIELDS:
                raise ProtocolError(f"unknown setting; expected one of {', '.join(_GLOBAL_FIELDS)}", **where)
            if key == "resolution":
                raw[key] = (self.resolution(value_node, where), where)
            else:
                raw[key] = (self.value(value_node, where), where)
        settings: dict[str, Any] = {}
        if "initial_soc" in raw:
            if "initial_state_type" in raw or "initial_state_value" in raw:
                raise ProtocolError("give either initial_soc or initial_state_type/initial_state_value, not both",
                                    **raw["initial_soc"][1])
            value, where = raw["initial_soc"]
            settings["initial_soc"] = _soc_fraction(_number(value, where, "initial_soc"), where)
        elif "initial_state_type" in raw or "initial_state_value" in raw:
            settings.update(self.initial_state(raw, line))
        temperatures = [raw[k] for k in ("temperature", "initial_temperature") if k in raw]
        if temperatures:
            values = {_number(value, where, "temperature") for value, where in temperatures}
            if len(values) > 1:
                raise ProtocolError("temperature and initial_temperature disagree", **temperatures[1][1])
            settings["temperature_c"] = values.pop()
        if "resolution" in raw:
            settings["period_s"] = raw["resolution"][0]
        return settings

    def initial_state(self, raw: dict[str, tuple[Any, dict[str, Any]]], line: int) -> dict[str, float]:
        if "initial_state_type" not in raw or "initial_state_value" not in raw:
            raise ProtocolError("initial_state_type and initial_state_value must be given together",
                                field="global", line=line)
        kind, kind_where = raw["initial_state_type"]
        value, where = raw["initial_state_value"]
        number = _number(value, where, "initial_state_value")
        if kind == "soc_percentage":
            if not 0.0 <= number <= 100.0:
                raise ProtocolError(f"an SOC percentage must be between 0 and 100, got {number:g}", **where)
            return {"initial_soc": number / 100.0}
        if kind == "voltage":
            if number <= 0:
                raise ProtocolError(f"an initial voltage must be positive, got {number:g}", **where)
            return {"initial_voltage": number}
        raise ProtocolError(f"unknown initial_state_type {kind!r}; expected soc_percentage or voltage", **kind_where)

    def resolution(self, node: Node, where: dict[str, Any]) -> float:
        if isinstance(node, ScalarNode):
            period = _number(self.value(node, where), where, "resolution")
        else:
            entries = {key: (value_node, line) for key, value_node, line in self.mapping(node, where, "'resolution'")}
            if "time" not in entries:
                return DEFAULT_PERIOD_S
            value_node, line = entries["time"]
            where = {"field": "global.resolution.time", "line": line}
            period = _number(self.value(value_node, where), where, "resolution time")
        if period <= 0:
            raise ProtocolError(f"the time resolution must be positive, got {period:g}", **where)
        return period

    def steps(self, sequence: SequenceNode, label: str | None) -> list[Step]:
        steps: list[Step] = []
        for item in sequence.value:
            line = _line(item)
            if not isinstance(item, MappingNode):
                raise ProtocolError("each step must be a mapping", step=self.count + 1, line=line)
            entries = self.mapping(item, {"step": self.count + 1, "line": line}, "a step")
            keys = [key for key, _, _ in entries]
            if "direction" in keys:
                steps.append(self.step(entries, None, label, line))
                continue
            if len(entries) != 1:
                raise ProtocolError(f"cannot tell the step kind from keys {keys}; use 'direction', a Charge/"
                                    "Discharge/Rest key, or a named group of steps", step=self.count + 1, line=line)
            name, body, key_line = entries[0]
            direction = _direction(name)
            if direction is not None and not isinstance(body, SequenceNode):
                body_entries = [] if _is_null(body) else self.mapping(
                    body, {"step": self.count + 1, "line": key_line}, f"the {direction} step")
                steps.append(self.step(body_entries, direction, label, key_line))
            elif isinstance(body, SequenceNode) and body.value:
                steps.extend(self.steps(body, name))
            else:
                raise ProtocolError(f"unknown step {name!r}; expected Charge, Discharge, Rest or a named group of "
                                    "steps", step=self.count + 1, line=key_line)
        return steps

    def step(self, entries: list[tuple[str, Node, int]], direction: Direction | None, label: str | None,
             line: int) -> Step:
        self.count += 1
        number = self.count
        fields: dict[str, tuple[Node, dict[str, Any]]] = {}
        allowed = _STEP_FIELDS if direction else ("direction", *_STEP_FIELDS)
        for key, node, key_line in entries:
            where = {"step": number, "label": label, "field": key, "line": key_line}
            if key not in allowed:
                raise ProtocolError(f"unknown field; expected one of {', '.join(allowed)}", **where)
            fields[key] = (node, where)
        if direction is None:
            node, where = fields.pop("direction")
            raw = self.value(node, where)
            direction = _direction(raw) if isinstance(raw, str) else None
            if direction is None:
                raise ProtocolError(f"unknown direction {raw!r}; expected Charge, Discharge or Rest", **where)
        base = {"step": number, "label": label, "line": line}
        mode, value = self.control(fields, direction, base)
        ends = self.ends(fields, direction, base)
        return Step(number=number, direction=direction, mode=mode, value=value, ends=ends, label=label, line=line)

    def control(self, fields: dict[str, tuple[Node, dict[str, Any]]], direction: Direction,
                base: dict[str, Any]) -> tuple[Mode | None, float | None]:
        if direction == "Rest":
            for key in ("mode", "value"):
                if key in fields:
                    raise ProtocolError("a Rest step takes no mode or value", **fields[key][1])
            return None, None
        for key in ("mode", "value"):
            if key not in fields:
                raise ProtocolError(f"missing field {key!r}", **base)
        mode_node, mode_where = fields["mode"]
        raw_mode = self.value(mode_node, mode_where)
        mode = _MODE_ALIASES.get(str(raw_mode).strip().lower())
        if mode is None:
            raise ProtocolError(f"unknown mode {raw_mode!r}; expected one of {', '.join(MODES)}", **mode_where)
        value_node, value_where = fields["value"]
        raw_value = self.value(value_node, value_where)
        if mode == "C-rate" and isinstance(raw_value, str) and raw_value.strip().upper().startswith("C/"):
            value = 1.0 / _number(raw_value.strip()[2:], value_where, "C-rate divisor")
        else:
            value = _number(raw_value, value_where)
        if value < 0:
            raise ProtocolError(f"value must not be negative (got {value:g}); the direction sets the sign",
                                **value_where)
        if mode == "Voltage" and value == 0:
            raise ProtocolError("a Voltage step needs a positive value", **value_where)
        return mode, value

    def ends(self, fields: dict[str, tuple[Node, dict[str, Any]]], direction: Direction,
             base: dict[str, Any]) -> tuple[EndCondition, ...]:
        ends: list[EndCondition] = []
        if "ends" in fields:
            node, where = fields["ends"]
            items = node.value if isinstance(node, SequenceNode) else [node]
            for item in items:
                item_where = {**where, "line": _line(item)}
                if isinstance(item, MappingNode):
                    raw = {key: (self.value(value_node, {**item_where, "line": key_line}), key_line)
                           for key, value_node, key_line in self.mapping(item, item_where, "an end condition")}
                    unknown = set(raw) - set(END_FIELDS)
                    if unknown:
                        raise ProtocolError(f"unknown end-condition key {sorted(unknown)[0]!r}; expected "
                                            f"{', '.join(END_FIELDS)}", **item_where)
                    ends.append(_end(parse_end_mapping, {k: v for k, (v, _) in raw.items()}, direction,
                                     where=item_where))
                else:
                    ends.append(_end(parse_end_string, str(self.value(item, item_where)), where=item_where))
        if "duration" in fields:
            node, where = fields["duration"]
            ends.append(_end(time_end, self.value(node, where), where=where))
        if not ends:
            raise ProtocolError("no end condition; add 'ends' or 'duration'", **base)
        return tuple(ends)


def _end(parse: Any, *args: Any, where: dict[str, Any]) -> EndCondition:
    try:
        return EndCondition(*parse(*args))
    except ValueError as exc:
        raise ProtocolError(str(exc), **where) from None


def _direction(name: Any) -> Direction | None:
    text = str(name).strip().lower()
    return next((d for d in DIRECTIONS if d.lower() == text), None)


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _line(node: Node) -> int:
    return node.start_mark.line + 1
