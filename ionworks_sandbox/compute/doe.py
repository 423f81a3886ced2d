"""Design of experiments: expand ``design_parameters_doe`` or ``conditions`` into one design per simulation.

Samplings: ``grid`` (cartesian product of each row's values), ``random`` and ``latin_hypercube`` (``count``
runs, default 1, drawn with a seeded generator so a batch is reproducible). Rows: ``discrete`` (``values``),
``range`` (``min``, ``max``; ``count`` equally spaced points on a grid) and ``normal`` (``mean``, ``std``;
on a grid, ``count`` equal-probability quantiles). The run count matches the client's own pre-count: a grid
gives the product of ``len(values)``/``count`` per row, other samplings ``count or 1``.

Example:
    >>> expand_doe({"sampling": "grid", "rows": [{"type": "discrete", "name": "x", "values": [1, 2]}]}, None, 0)
    [{'x': 1.0}, {'x': 2.0}]
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SAMPLINGS = ("grid", "random", "latin_hypercube")
ROW_TYPES = ("discrete", "range", "normal")
_ROW_FIELDS = ("type", "name", "min", "max", "count", "values", "mean", "std")


def expand_doe(
    doe: Mapping[str, Any] | None, conditions: Sequence[Mapping[str, Any]] | None, seed: int | str | None = None
) -> list[dict[str, float]]:
    """The design parameters of each run, in run order.

    With ``conditions`` (``[{"experiment_parameters": {...}, "design_parameters": {...}}, ...]``) the i-th
    result is condition i's design; its experiment parameters stay with the caller. Neither given: one run
    with no design overrides. ``seed`` (an int, or a string such as a batch id) fixes random draws.
    Raises ``ValueError`` naming the row and field of a bad DOE.

    Example:
        >>> expand_doe({"sampling": "random", "count": 2, "rows": [{"type": "range", "name": "x", "min": 0,
        ...             "max": 1}]}, None, seed=7)
    """
    if doe is not None and conditions is not None:
        raise ValueError("give either design_parameters_doe or conditions, not both")
    if conditions is not None:
        return [_condition_design(i, c) for i, c in enumerate(conditions)]
    if doe is None:
        return [{}]
    if not isinstance(doe, Mapping):
        raise ValueError("design_parameters_doe must be an object with 'sampling' and 'rows'")
    sampling = doe.get("sampling")
    if sampling not in SAMPLINGS:
        raise ValueError(f"design_parameters_doe.sampling {sampling!r} is not supported; expected one of "
                         f"{', '.join(SAMPLINGS)}")
    rows = doe.get("rows")
    if not isinstance(rows, Sequence) or isinstance(rows, str | bytes) or not rows:
        raise ValueError("design_parameters_doe.rows must be a non-empty list")
    checked = [_row(i, row, sampling) for i, row in enumerate(rows, start=1)]
    names = [row["name"] for row in checked]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ValueError(f"design_parameters_doe.rows: parameter {duplicate!r} appears more than once")
    if sampling == "grid":
        axes = [_grid_axis(row) for row in checked]
        return [dict(zip(names, point, strict=True)) for point in itertools.product(*axes)]
    count = _count(doe.get("count", None), "design_parameters_doe.count", default=1)
    rng = np.random.default_rng(_seed(seed))
    if sampling == "random":
        columns = [_random_column(row, rng, count) for row in checked]
    else:
        from scipy.stats import qmc

        unit = qmc.LatinHypercube(d=len(checked), rng=rng).random(count)
        columns = [_from_unit(row, unit[:, j]) for j, row in enumerate(checked)]
    return [{name: float(column[i]) for name, column in zip(names, columns, strict=True)} for i in range(count)]


def _condition_design(index: int, condition: Mapping[str, Any]) -> dict[str, float]:
    where = f"conditions[{index}]"
    if not isinstance(condition, Mapping):
        raise ValueError(f"{where} must be an object with experiment_parameters and design_parameters")
    design = condition.get("design_parameters") or {}
    if not isinstance(design, Mapping):
        raise ValueError(f"{where}.design_parameters must be an object")
    return {name: _finite(value, f"{where}.design_parameters.{name}") for name, value in design.items()}


def _row(index: int, row: Any, sampling: str) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise ValueError(f"design_parameters_doe.rows[{index}] must be an object")
    name = row.get("name")
    where = f"design_parameters_doe row {index} ({name!r})" if name else f"design_parameters_doe row {index}"
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: field 'name' must be a parameter name")
    unknown = [key for key in row if key not in _ROW_FIELDS]
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}; expected {', '.join(_ROW_FIELDS)}")
    kind = row.get("type")
    if kind not in ROW_TYPES:
        raise ValueError(f"{where}: field 'type' is {kind!r}; expected one of {', '.join(ROW_TYPES)}")
    checked: dict[str, Any] = {"name": name, "type": kind, "where": where}
    if kind == "discrete":
        values = row.get("values")
        if not isinstance(values, Sequence) or isinstance(values, str | bytes) or not values:
            raise ValueError(f"{where}: field 'values' must be a non-empty list of numbers")
        checked["values"] = [_finite(v, f"{where}: field 'values'") for v in values]
        return checked
    first, second = ("min", "max") if kind == "range" else ("mean", "std")
    for key in (first, second):
        if row.get(key) is None:
            raise ValueError(f"{where}: field {key!r} is required for a {kind} row")
        checked[key] = _finite(row[key], f"{where}: field {key!r}")
    if kind == "range" and checked["min"] > checked["max"]:
        raise ValueError(f"{where}: field 'min' ({checked['min']:g}) is greater than 'max' ({checked['max']:g})")
    if kind == "normal" and checked["std"] < 0:
        raise ValueError(f"{where}: field 'std' must not be negative")
    if sampling == "grid":
        checked["count"] = _count(row.get("count"), f"{where}: field 'count'", default=None)
    return checked


def _grid_axis(row: dict[str, Any]) -> list[float]:
    if row["type"] == "discrete":
        return row["values"]
    count = row["count"]
    if row["type"] == "range":
        return [float(v) for v in np.linspace(row["min"], row["max"], count)]
    from scipy.stats import norm

    quantiles = (np.arange(count) + 0.5) / count
    return [float(v) for v in norm.ppf(quantiles, loc=row["mean"], scale=row["std"])]


def _random_column(row: dict[str, Any], rng: np.random.Generator, count: int) -> np.ndarray:
    if row["type"] == "discrete":
        return rng.choice(np.asarray(row["values"]), size=count)
    if row["type"] == "range":
        return rng.uniform(row["min"], row["max"], size=count)
    return rng.normal(row["mean"], row["std"], size=count)


def _from_unit(row: dict[str, Any], unit: np.ndarray) -> np.ndarray:
    if row["type"] == "discrete":
        values = np.asarray(row["values"])
        return values[np.minimum((unit * len(values)).astype(int), len(values) - 1)]
    if row["type"] == "range":
        return row["min"] + unit * (row["max"] - row["min"])
    from scipy.stats import norm

    return norm.ppf(unit, loc=row["mean"], scale=row["std"])


def _count(value: Any, where: str, default: int | None) -> int:
    if value is None:
        if default is None:
            raise ValueError(f"{where} is required on a grid (how many points)")
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < 1:
        raise ValueError(f"{where} must be a whole number >= 1, got {value!r}")
    return int(value)


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{where} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{where} must be finite, got {value!r}")
    return number


def _seed(seed: int | str | None) -> int:
    if seed is None:
        return 0
    if isinstance(seed, int) and not isinstance(seed, bool):
        return seed
    return int.from_bytes(hashlib.sha256(str(seed).encode()).digest()[:8], "big")
