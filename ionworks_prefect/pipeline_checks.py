"""Checks of a pipeline config made before anything is sent, each an :class:`InvalidPipelineConfig` naming its field.

- every fitted parameter: a finite initial value; bounds of two numbers, lower below upper; bounds above zero
  when the parameter is fitted on a log scale (``transform`` ``Log`` or ``Log10``), and a positive initial
  value then; the initial value within the bounds (unless ``check_initial_value`` is false);
- at least one element;
- inline time series (``{"Time [s]": [...], ...}`` anywhere in the elements) of at most 1,000 rows, the client's
  documented limit (larger data is uploaded as a measurement and referenced as ``db:<id>``), with finite
  numbers for time, current and voltage (a missing current or voltage is refused too).

The fields are named as in the wire form, e.g. ``elements.fit.parameters.Negative particle diffusivity
[m2.s-1].bounds``.

Example:
    >>> check_pipeline({"elements": {"fit": {"parameters": {"x": {"initial_value": float("nan")}}}}})
    Traceback (most recent call last):
    InvalidPipelineConfig: elements.fit.parameters.x.initial_value: ...
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from .exceptions import InvalidPipelineConfig

MAX_INLINE_ROWS = 1000
LOG_TRANSFORMS = frozenset({"Log", "Log10"})
_COLUMNS = ("Time [s]", "Current [A]", "Voltage [V]")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def check_parameter(field: str, spec: Mapping[str, Any]) -> None:
    """Check one fitted parameter's wire form (``initial_value``, ``bounds``, ``transform``)."""
    initial = spec.get("initial_value")
    start = _number(initial)
    if initial is not None and (start is None or not math.isfinite(start)):
        raise InvalidPipelineConfig(f"{field}.initial_value: must be a finite number, got {initial!r}")
    log_scale = spec.get("transform") in LOG_TRANSFORMS
    bounds = spec.get("bounds")
    if bounds is None:
        if log_scale and start is not None and start <= 0:
            raise InvalidPipelineConfig(f"{field}.initial_value: {initial!r} is not above 0, which a "
                                        f"{spec['transform']} (log-scale) parameter needs")
        return
    if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
        raise InvalidPipelineConfig(f"{field}.bounds: must be [lower, upper], got {bounds!r}")
    lower, upper = (_number(b) for b in bounds)
    if lower is None or upper is None or math.isnan(lower) or math.isnan(upper):
        raise InvalidPipelineConfig(f"{field}.bounds: both bounds must be numbers, got {list(bounds)!r}")
    if not lower < upper:
        raise InvalidPipelineConfig(f"{field}.bounds: the lower bound {bounds[0]!r} must be below the upper bound "
                                    f"{bounds[1]!r}")
    if log_scale and (lower <= 0 or not math.isfinite(upper)):
        raise InvalidPipelineConfig(f"{field}.bounds: a {spec['transform']} (log-scale) parameter needs finite "
                                    f"bounds above 0, got {list(bounds)!r}")
    if start is not None and spec.get("check_initial_value") is not False and not lower <= start <= upper:
        raise InvalidPipelineConfig(f"{field}.initial_value: {initial!r} is outside the bounds {list(bounds)!r}")


def _objects(value: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(value, dict):
        yield path, value
        for key, item in value.items():
            yield from _objects(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _objects(item, f"{path}[{index}]")


def check_pipeline(config: Mapping[str, Any]) -> None:
    """Check the fitted parameters and inline data of a pipeline config (wire form); see the module docstring."""
    elements = config.get("elements")
    if not isinstance(elements, Mapping) or not elements:
        raise InvalidPipelineConfig("elements: a pipeline needs at least one element, got "
                                    f"{type(elements).__name__ if elements is not None else 'none'}")
    for name, element in elements.items():
        parameters = element.get("parameters") if isinstance(element, Mapping) else None
        if isinstance(parameters, Mapping):
            for parameter, spec in parameters.items():
                if isinstance(spec, Mapping):
                    check_parameter(f"elements.{name}.parameters.{parameter}", spec)
    for field, value in _objects(elements, "elements"):
        rows = max((len(value[c]) for c in _COLUMNS if isinstance(value.get(c), (list, tuple))), default=0)
        if rows > MAX_INLINE_ROWS:
            raise InvalidPipelineConfig(f"{field}: inline time series has {rows} rows, more than the "
                                        f"{MAX_INLINE_ROWS} the client accepts; give it as a file: reference with "
                                        "cell= so it is uploaded as a measurement, or as db:<measurement id>")
        if rows:
            _check_values(field, value)


def _check_values(field: str, series: Mapping[str, Any]) -> None:
    for column in _COLUMNS:
        values = series.get(column)
        if not isinstance(values, (list, tuple)):
            continue
        for row, item in enumerate(values):
            number = _number(item)
            if (number is None and (item is not None or column != "Time [s]")) or (
                    number is not None and not math.isfinite(number)):
                raise InvalidPipelineConfig(f"{field}.{column}[{row}]: inline time series holds {item!r} where a "
                                            "finite number is expected")
