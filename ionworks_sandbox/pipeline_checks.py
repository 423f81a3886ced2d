"""Submission-time checks of a pipeline that would otherwise fail only once it runs, as the platform makes them.

- Inline time series hold at most :data:`MAX_INLINE_ROWS` rows (the client's documented limit); larger data is
  uploaded as a measurement and referred to as ``db:<measurement id>``.
- Every parameter a ``data_fit`` fits is a name the objectives' PyBaMM model reads or one an earlier element
  defines (entry values, earlier fits, calculation outputs); otherwise the answer names the closest known names.

Both raise :class:`ValueError` subclasses carrying the field path; ``submissions.check_elements`` answers 422.

Example:
    >>> check_submission(body["elements"])   # after the engine's own shape check
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

from ionworks_schema import LEGACY_ELEMENT_TYPE_ALIASES

from .compute.interpolants import knot_name
from .compute.models import ModelSpec, model_parameter_names, parse_model
from .compute.objectives import DEFAULT_MODEL

MAX_INLINE_ROWS = 1000
_COLUMNS = ("Time [s]", "Current [A]", "Voltage [V]")


class InlineDataTooLarge(ValueError):
    """An inline time series has more rows than the platform accepts."""

    def __init__(self, field: str, rows: int) -> None:
        super().__init__(
            f"{field}: time series has {rows} rows, which exceeds the maximum of {MAX_INLINE_ROWS} rows for inline "
            'data. Upload the data as a measurement using client.cell_measurement.create() and reference it with '
            '"db:<measurement_id>" instead.'
        )
        self.field, self.rows = field, rows

    def detail(self) -> dict[str, Any]:
        return {"field": self.field, "n_rows": self.rows, "max_rows": MAX_INLINE_ROWS}


class UnknownParameter(ValueError):
    """A fitted parameter no model reads and no earlier element defines."""

    def __init__(self, field: str, name: str, models: list[str], closest: list[str]) -> None:
        hint = f"closest known names: {', '.join(repr(c) for c in closest)}" if closest else "no known name is close"
        super().__init__(
            f"{field}: {name!r} is not a parameter of the {'/'.join(models)} model and no earlier element defines "
            f"it; {hint}"
        )
        self.field, self.name, self.closest = field, name, closest

    def detail(self) -> dict[str, Any]:
        return {"field": self.field, "value": self.name, "closest": self.closest}


def check_submission(elements: Mapping[str, Any]) -> None:
    """Both checks, over elements the engine has already accepted as well formed."""
    check_inline_rows(elements)
    check_fit_parameters(elements)


def check_inline_rows(elements: Mapping[str, Any]) -> None:
    """Raise :class:`InlineDataTooLarge` for the first inline time series over the limit, wherever it sits."""
    for field, value in _objects(elements, "elements"):
        rows = max((len(value[c]) for c in _COLUMNS if isinstance(value.get(c), list)), default=0)
        if rows > MAX_INLINE_ROWS:
            raise InlineDataTooLarge(field, rows)


def check_fit_parameters(elements: Mapping[str, Any]) -> None:
    """Raise :class:`UnknownParameter` for the first fitted name neither the model nor an earlier element knows.

    A fit whose ``options.validate`` is ``False`` is not checked (the engine does not check it either).
    """
    defined: set[str] = set()
    entry_model: Any = None
    for name, config in elements.items():
        kind = LEGACY_ELEMENT_TYPE_ALIASES.get(config["element_type"], config["element_type"])
        if kind == "entry" and "values" not in config:  # a PiecewiseInterpolation1D entry defines its knots
            base, variable = config.get("base_parameter_name", ""), config.get("breakpoint_parameter_name", "")
            defined |= {knot_name(base, variable, float(p)) for p in config.get("breakpoint_values") or []}
        elif kind == "entry":
            defined |= set(config["values"])
            entry_model = config["values"].get("model", entry_model)
        elif kind == "calculation":
            defined.add(f"{config['electrode'].capitalize()} electrode capacity [A.h]")
        elif kind == "data_fit":
            field = f"elements.{name}"
            if (config.get("options") or {}).get("validate", True) is not False:
                models = _objective_models(config["objectives"], entry_model, f"{field}.objectives")
                _check_names(config["parameters"], models, defined, f"{field}.parameters")
            defined |= set(config["parameters"])


def _check_names(parameters: Mapping[str, Any], models: list[ModelSpec], defined: set[str], field: str) -> None:
    known = defined.union(*(model_parameter_names(m) for m in models))
    for parameter in parameters:
        if parameter not in known:
            closest = difflib.get_close_matches(parameter, sorted(known), n=3, cutoff=0.6)
            labels = sorted({m.type for m in models})
            raise UnknownParameter(f"{field}.{parameter}", parameter, labels, closest)


def _objective_models(objectives: Mapping[str, Any], entry_model: Any, field: str) -> list[ModelSpec]:
    """Each objective's model as the engine picks it: its options, its legacy ``model``, an entry's, the default."""
    models = []
    for name, objective in objectives.items():
        chosen = (objective.get("options") or {}).get("model") or objective.get("model") or entry_model
        models.append(parse_model(chosen or DEFAULT_MODEL, f"{field}.{name}.options.model"))
    return models


def _objects(value: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(value, dict):
        yield path, value
        for key, item in value.items():
            yield from _objects(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, (dict, list)):
                yield from _objects(item, f"{path}[{index}]")
