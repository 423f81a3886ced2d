"""Fitted parameter sets: what a pipeline fit produced, in tables, JSON, BPX, and compared between fits."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any, Optional

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from .exceptions import ParameterSetError
from .pipeline_config import referenced_measurements
from .results import PipelineResult

DRIFT_COLUMNS = ("parameter", "previous", "current", "absolute_change", "relative_change")
#: A knot of a fitted curve, named as ionworks_schema's ``SlopesToKnots`` / ``PiecewiseInterpolation1D`` name them:
#: ``"Positive electrode OCP at Stoichiometry 0.5 [V]"``.
_CURVE_KNOT = re.compile(r"^(?P<curve>.+) at (?P<variable>\S+) (?P<at>[-+0-9.eE]+) \[(?P<unit>[^\]]*)\]$")


def curve_knot(name: str) -> tuple[str, str, float] | None:
    """For a knot of a fitted curve, the curve's name with its unit, the variable and where the knot sits.

    Example:
        >>> curve_knot("Positive electrode OCP at Stoichiometry 0.5 [V]")
        ('Positive electrode OCP [V]', 'Stoichiometry', 0.5)
    """
    found = _CURVE_KNOT.match(name)
    if not found:
        return None
    try:
        return f"{found['curve']} [{found['unit']}]", found["variable"], float(found["at"])
    except ValueError:
        return None


class FittedParameter(BaseModel):
    """One fitted parameter: its value, the search bounds and start, and the element that fitted it."""

    model_config = ConfigDict(frozen=True)

    name: str
    value: float
    lower_bound: Optional[float] = None
    upper_bound: Optional[float] = None
    initial_value: Optional[float] = None
    element: Optional[str] = None

    @property
    def curve(self) -> str | None:
        """For a knot of a fitted curve (an adapted OCP), the curve's name with its unit; None otherwise.

        Example:
            >>> FittedParameter(name="Positive electrode OCP at Stoichiometry 0.5 [V]", value=3.9).curve
            'Positive electrode OCP [V]'
        """
        knot = curve_knot(self.name)
        return knot[0] if knot else None

    @property
    def at_bound(self) -> bool:
        """True when the value sits on (within 0.1 % of) a bound, a sign the bounds were too narrow."""
        return any(b is not None and math.isclose(self.value, b, rel_tol=1e-3)
                   for b in (self.lower_bound, self.upper_bound))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def validation_rmse_mv(result: PipelineResult) -> dict[str, float]:
    """Voltage RMSE per objective, in mV, from the result's validation elements.

    Reads ``summary_stats`` (``{objective: {statistic: value}}``, in volts) as the client decodes it
    (``ionworks_schema.ValidationResult.summary_stats``); the statistic is matched by name (``RMSE``, any case).

    Example:
        >>> validation_rmse_mv(result)
        {'RPT 3 1C': 12.4}
    """
    rmse: dict[str, float] = {}
    for summary in result.elements.values():
        for objective, stats in summary.summary_stats.items():
            value = next((v for k, v in (stats or {}).items() if str(k).lower() == "rmse"), None)
            if _number(value) is not None:
                rmse[objective] = 1000.0 * float(value)
    return rmse


class FittedParameterSet(BaseModel):
    """The parameters a pipeline fitted for one cell, with bounds, costs and provenance.

    Example:
        >>> fitted = FittedParameterSet.from_pipeline_result(result, cell="cell-7")
        >>> fitted.diff(previous)  # drift table
    """

    model_config = ConfigDict(frozen=True)

    pipeline_id: str
    cell: Optional[str] = Field(default=None, description="Cell the parameters describe (instance id or name).")
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    parameters: list[FittedParameter] = Field(description="Fitted parameters, in fit order.")
    fixed_values: dict[str, float] = Field(default_factory=dict, description="Other numeric pipeline values.")
    costs: dict[str, float] = Field(default_factory=dict, description="Final cost of each fit element.")
    rmse_mv: dict[str, float] = Field(default_factory=dict,
                                      description="Voltage RMSE per objective in mV, from the pipeline's validation.")
    measurement_ids: list[str] = Field(default_factory=list, description="Measurements the fit used (db: refs).")
    test: Optional[str] = Field(default=None, description="The reference performance test this set was fitted to.")
    tested_at: Optional[datetime] = Field(default=None, description="When that test ran.")
    equivalent_full_cycles: Optional[float] = Field(default=None, description="The cell's throughput at the test.")

    @property
    def values(self) -> dict[str, float]:
        """Fitted values by parameter name."""
        return {p.name: p.value for p in self.parameters}

    @property
    def headline(self) -> list[FittedParameter]:
        """The fitted parameters other than curve knots: what histories, drift and fleet views follow."""
        return [p for p in self.parameters if p.curve is None]

    @classmethod
    def from_pipeline_result(cls, result: PipelineResult, *, cell: str | None = None,
                             config: dict[str, Any] | None = None, **test_fields: Any) -> FittedParameterSet:
        """Build from a pipeline result; bounds come from the submitted config (``result.config`` or ``config``).

        ``test_fields`` (``test``, ``tested_at``, ``equivalent_full_cycles``) say which test the set describes.
        Raises :class:`ParameterSetError` when the pipeline fitted nothing.

        Example:
            >>> FittedParameterSet.from_pipeline_result(result, cell="cell-7")
        """
        config = config or result.config or {}
        elements = config.get("elements") or {}
        parameters: dict[str, FittedParameter] = {}  # a later stage refitting a parameter supersedes earlier ones
        costs: dict[str, float] = {}
        for name, summary in result.fit_elements().items():
            specs = (elements.get(name) or {}).get("parameters") or {p: {} for p in summary.parameter_values}
            for pname, spec in specs.items():
                value = _number(result.parameter_values.get(pname, summary.parameter_values.get(pname)))
                if value is None:
                    continue
                bounds = list(spec.get("bounds") or [None, None]) + [None, None]
                parameters.pop(pname, None)
                parameters[pname] = FittedParameter(name=pname, value=value, lower_bound=_number(bounds[0]),
                                                    upper_bound=_number(bounds[1]),
                                                    initial_value=_number(spec.get("initial_value")), element=name)
            if summary.cost is not None:
                costs[name] = float(summary.cost)
        if not parameters:
            raise ParameterSetError(f"Pipeline {result.pipeline_id} has no fitted parameters")
        fitted = set(parameters)
        fixed = {k: v for k, raw in result.parameter_values.items()
                 if k not in fitted and (v := _number(raw)) is not None}
        created = datetime.fromisoformat(result.completed_at) if result.completed_at else datetime.now(timezone.utc)
        return cls(pipeline_id=result.pipeline_id, cell=cell, created_at=created, parameters=list(parameters.values()),
                   fixed_values=fixed, costs=costs, rmse_mv=validation_rmse_mv(result),
                   measurement_ids=referenced_measurements(config), **test_fields)

    def to_polars(self) -> pl.DataFrame:
        """One row per fitted parameter: name, value, bounds, initial value, element, at_bound.

        Example:
            >>> fitted.to_polars().columns
            ['parameter', 'value', 'lower_bound', 'upper_bound', 'initial_value', 'element', 'at_bound']
        """
        return pl.DataFrame(
            [{"parameter": p.name, "value": p.value, "lower_bound": p.lower_bound, "upper_bound": p.upper_bound,
              "initial_value": p.initial_value, "element": p.element, "at_bound": p.at_bound}
             for p in self.parameters],
            schema={"parameter": pl.String, "value": pl.Float64, "lower_bound": pl.Float64,
                    "upper_bound": pl.Float64, "initial_value": pl.Float64, "element": pl.String,
                    "at_bound": pl.Boolean},
        )

    def to_json(self) -> str:
        """The set as JSON (round-trips with :meth:`from_json`)."""
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> FittedParameterSet:
        """Read a set written by :meth:`to_json`."""
        return cls.model_validate_json(text)

    def to_bpx(self, *, base: str = "Chen2020", model: str = "SPMe", title: str | None = None) -> dict[str, Any]:
        """A BPX 1.x document: the fitted (and fixed) values merged over a PyBaMM base set, validated with ``bpx``.

        Raises :class:`ParameterSetError` if a fitted parameter has no place in BPX or the result is invalid.

        Example:
            >>> document = fitted.to_bpx()
            >>> pybamm.ParameterValues.create_from_bpx_obj(document)
        """
        from .bpx_export import export_bpx

        overrides = {**self.fixed_values, **self.values}
        return export_bpx(overrides, fitted=list(self.values), base=base, model=model,
                          title=title or f"Fitted parameters {self.cell or ''} (pipeline {self.pipeline_id})".strip())

    def diff(self, previous: FittedParameterSet | None) -> pl.DataFrame:
        """Drift against an earlier fit: previous and current value, absolute and relative change per parameter.

        Parameters new in this fit have null previous values; parameters dropped since are listed with null
        current values.

        Example:
            >>> fitted.diff(last_week).filter(pl.col("relative_change").abs() > 0.05)
        """
        before = previous.values if previous else {}
        rows = []
        for name in list(self.values) + [n for n in before if n not in self.values]:
            old, new = before.get(name), self.values.get(name)
            change = new - old if old is not None and new is not None else None
            relative = change / abs(old) if change is not None and old else None
            rows.append({"parameter": name, "previous": old, "current": new, "absolute_change": change,
                         "relative_change": relative})
        return pl.DataFrame(rows, schema={"parameter": pl.String, **{c: pl.Float64 for c in DRIFT_COLUMNS[1:]}})
