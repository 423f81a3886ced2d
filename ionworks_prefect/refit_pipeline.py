"""The default ageing refit: one Ionworks pipeline that fits what real ageing moves.

Ageing moves a cell's balance (loss of lithium inventory, loss of active material in each electrode), its
series resistance and its transport. The pipeline fits them in the order they can be identified:

1. ``ocp``: an entry that makes the positive electrode OCP a piecewise-linear function of stoichiometry
   (``PiecewiseInterpolation1D``), its knots at the base set's OCP.
2. ``balance``: on the lowest-rate test (nearly at equilibrium), the stoichiometry window: the negative
   electrode's initial concentration (with the positive one, the lithium inventory) and both active-material
   fractions, against the base OCP shape, so they stay comparable from refit to refit.
3. ``ocp_shape``: on the same test, the OCP knots with the window held: what the base curve misses.
   Fitted together with the window they would trade off against it (a stretched OCP for another
   active-material fraction).
4. ``balance_on_ocp``: the window again, against the fitted curve.
5. ``kinetics``: on every test, the contact resistance and both particle diffusivities, with the balance and
   OCP held.

A cell's later tests hold the curve its first test fitted (``ocp_knots``: an ``ocp_knots`` entry instead of
stages 3-4), so every test's window is measured against the same electrode curve and their changes are the
cell's ageing, not a refitted OCP.

Each objective reads ``db:<measurement id>``; every test's model starts at the rested voltage its data opens
with and runs at its measured temperature when it has a ``Temperature [degC]`` column. Every fit uses
``ScipyLeastSquares`` on RMSE in volts. Building the config evaluates the base set's OCP at the knots with
PyBaMM (imported on first use); nothing is sent anywhere.

Example:
    >>> data = [RefitData(name="C/10", measurement_id="m1", mean_discharge_current=0.5),
    ...         RefitData(name="C/2", measurement_id="m2", mean_discharge_current=2.5)]
    >>> config = ageing_refit_pipeline(data, model="SPMe")
    >>> list(config["elements"])
    ['ocp', 'balance', 'ocp_shape', 'balance_on_ocp', 'kinetics']

Other refits: :func:`parameter_fit_pipeline` (given parameters, one objective per measurement),
:func:`pipeline_from_file` (a YAML/JSON pipeline whose ``"*"`` objective stands for every measurement), and
:func:`with_validation`, which ends any of them with the validation that reports RMSE per objective.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import ionworks_schema as iws
import yaml
from pydantic import BaseModel, ConfigDict

from .cell_tests import MeasurementRef
from .exceptions import ParameterSetError

CN0 = "Initial concentration in negative electrode [mol.m-3]"
EPS_N = "Negative electrode active material volume fraction"
EPS_P = "Positive electrode active material volume fraction"
R_CONTACT = "Contact resistance [Ohm]"
DN = "Negative particle diffusivity [m2.s-1]"
DP = "Positive particle diffusivity [m2.s-1]"
OCP_P = "Positive electrode OCP [V]"
STOICHIOMETRY = "Stoichiometry"
#: Stoichiometries at which the positive OCP is fitted: the NMC window of a full cell and some margin.
OCP_BREAKPOINTS = tuple(round(0.15 + 0.05 * i, 2) for i in range(18))
BASE_PARAMETER_SET = "Chen2020"
#: The default pipeline's name in fit keys: a new version refits every test once.
DEFAULT_REFIT = "ageing refit 1"
#: Objective key in a pipeline file that stands for "one objective per measurement".
EACH_MEASUREMENT = "*"
VALIDATION_ELEMENT = "validate"
#: Tolerances a cycler's noise allows (scipy's 1e-8 defaults chase solver noise) and a budget per fit.
LEAST_SQUARES = {"ftol": 1e-5, "xtol": 1e-5, "max_nfev": 2000}

#: (initial value, bounds) around Chen2020, wide enough for an aged commercial NMC/graphite cell.
BALANCE_PARAMETERS: dict[str, tuple[float, tuple[float, float]]] = {
    CN0: (29866.0, (15000.0, 33000.0)),
    EPS_N: (0.75, (0.45, 0.95)),
    EPS_P: (0.665, (0.35, 0.9)),
}
KINETIC_PARAMETERS: dict[str, tuple[float, tuple[float, float]]] = {
    R_CONTACT: (0.01, (0.0, 0.1)),
    DN: (3.3e-14, (1e-15, 1e-12)),
    DP: (4.0e-15, (1e-16, 1e-13)),
}


def _knot(stoichiometry: float) -> str:
    return f"Positive electrode OCP at {STOICHIOMETRY} {stoichiometry:g} [V]"


#: Drift thresholds of the default refit's kinetic parameters. Constant-current discharges pin the balance down
#: to under 1 % but these only to about 10 %: between tests of a cell whose lithium inventory moved by 2 % they
#: moved by up to 11 % (tests/test_ageing_refit.py), so 5 % would flag every night.
KINETIC_DRIFT_THRESHOLDS: dict[str, float] = {R_CONTACT: 0.25, DN: 0.25, DP: 0.25}

#: Name -> unit of every parameter the default pipeline fits (without the knots when ``adapt_ocp=False``).
FITTED_PARAMETERS: dict[str, str] = {
    CN0: "mol.m-3",
    EPS_N: "-",
    EPS_P: "-",
    **{_knot(s): "V" for s in OCP_BREAKPOINTS},
    R_CONTACT: "Ohm",
    DN: "m2.s-1",
    DP: "m2.s-1",
}


class RefitData(BaseModel):
    """One test the refit fits: a measurement and, to pick the lowest-rate test, its mean discharge current.

    Example:
        >>> RefitData(name="C/2 discharge", measurement_id="m1", mean_discharge_current=2.5)
    """

    model_config = ConfigDict(frozen=True)

    name: str
    measurement_id: str
    mean_discharge_current: float | None = None


def describe_refit_data(client: Any, measurement_id: str, name: str) -> RefitData:
    """A measurement's ``RefitData``, its mean discharge current read from the measurement's steps.

    Args:
        client: An official ``ionworks.Ionworks`` client.
        measurement_id: The time-series measurement.
        name: The objective name the test gets in the pipeline.

    Returns:
        The ``RefitData``; ``mean_discharge_current`` is the duration-weighted mean current of the discharge
        steps, or ``None`` when the measurement has none.

    Raises:
        ionworks.errors.IonworksError: The measurement or its steps cannot be read.

    Examples:
        >>> describe_refit_data(client, "3f1c...", "C/2 discharge").mean_discharge_current
        2.4998
    """
    steps = client.cell_measurement.steps(measurement_id)
    columns = set(steps.columns)
    if steps.height == 0 or not {"Mean current [A]", "Duration [s]"} <= columns:
        return RefitData(name=name, measurement_id=measurement_id)
    current, duration = steps["Mean current [A]"].to_list(), steps["Duration [s]"].to_list()
    pairs = [(i, d) for i, d in zip(current, duration, strict=True) if i is not None and d and i > 0]
    total = sum(d for _, d in pairs)
    mean = sum(i * d for i, d in pairs) / total if total > 0 else None
    return RefitData(name=name, measurement_id=measurement_id, mean_discharge_current=mean)


@functools.cache
def _base_ocp_knots(base: str) -> tuple[float, ...]:
    import numpy as np
    import pybamm

    values = pybamm.ParameterValues(base)
    symbol = values[OCP_P](pybamm.Vector(np.array(OCP_BREAKPOINTS)))
    return tuple(float(v) for v in np.asarray(values.evaluate(symbol)).ravel())


def _lowest_rate(data: Sequence[RefitData]) -> RefitData:
    rated = [d for d in data if d.mean_discharge_current is not None and d.mean_discharge_current > 0]
    return min(rated, key=lambda d: d.mean_discharge_current) if rated else data[0]


def ageing_refit_pipeline(
    data: Sequence[RefitData],
    *,
    model: str = "SPMe",
    base_parameter_set: str = BASE_PARAMETER_SET,
    ocp_bounds_v: float = 0.3,
    adapt_ocp: bool = True,
    ocp_knots: Mapping[str, float] | None = None,
) -> dict:
    """The wire config of the default ageing refit over ``data`` (see the module docstring for the stages).

    Args:
        data: The tests to fit, one objective each; the lowest ``mean_discharge_current`` balances the cell
            (the first test when no current is known).
        model: ``"SPM"``, ``"SPMe"`` or ``"DFN"``, run with a contact resistance.
        base_parameter_set: The PyBaMM set the OCP knots start from (its values at the breakpoints).
        ocp_bounds_v: How far (V) each OCP knot may move from the base OCP.
        adapt_ocp: False keeps the base set's OCPs: no ``ocp`` and ``ocp_shape`` elements.
        ocp_knots: OCP knot values fitted before (a cell's first test): they are entered as they are and not
            fitted again, so the balance of later tests is measured against the same electrode curve.

    Returns:
        The pipeline config (``iws.Pipeline(...).to_config()``), ready for ``client.pipeline.create``.

    Raises:
        ValueError: ``data`` is empty or two tests share a name.

    Examples:
        >>> config = ageing_refit_pipeline([RefitData(name="C/2", measurement_id="m1")])
        >>> config["elements"]["kinetics"]["objectives"]["C/2"]["data"]
        'db:m1'
    """
    if not data:
        raise ValueError("ageing_refit_pipeline needs at least one test")
    names = [d.name for d in data]
    if len(set(names)) != len(names):
        raise ValueError(f"Test names must be unique, got {names}")
    options = {"model": {"type": model, "options": {"contact resistance": "true"}}}

    def objective(test: RefitData) -> iws.objectives.CurrentDriven:
        return iws.objectives.CurrentDriven(data_input=f"db:{test.measurement_id}", options=options)

    def fitted(ranges: dict[str, tuple[float, tuple[float, float]]]) -> dict[str, iws.Parameter]:
        return {n: iws.Parameter(n, initial_value=v, bounds=b) for n, (v, b) in ranges.items()}

    knots = {}
    elements: dict[str, Any] = {}
    if adapt_ocp and ocp_knots:
        elements["ocp_knots"] = iws.direct_entries.DirectEntry(parameters=dict(ocp_knots))
    elif adapt_ocp:
        knots = {_knot(s): (v, (v - ocp_bounds_v, v + ocp_bounds_v))
                 for s, v in zip(OCP_BREAKPOINTS, _base_ocp_knots(base_parameter_set), strict=True)}  # fmt: skip
    if adapt_ocp:
        elements["ocp"] = iws.direct_entries.PiecewiseInterpolation1D(
            base_parameter_name=OCP_P, breakpoint_values=list(OCP_BREAKPOINTS),
            breakpoint_parameter_name=STOICHIOMETRY,
        )  # fmt: skip
    lowest = _lowest_rate(data)
    def data_fit(tests: Sequence[RefitData], ranges: dict[str, tuple[float, tuple[float, float]]]) -> iws.DataFit:
        return iws.DataFit(
            objectives={test.name: objective(test) for test in tests},
            parameters=fitted(ranges),
            cost=iws.costs.RMSE(normalization="identity"),
            optimizer=iws.parameter_estimators.ScipyLeastSquares(**LEAST_SQUARES),
        )

    elements["balance"] = data_fit([lowest], BALANCE_PARAMETERS)
    if knots:
        elements["ocp_shape"] = data_fit([lowest], knots)
        # The window again, on the fitted curve: what a later test holding this OCP fits, so they compare.
        elements["balance_on_ocp"] = data_fit([lowest], BALANCE_PARAMETERS)
    elements["kinetics"] = data_fit(data, KINETIC_PARAMETERS)
    return iws.Pipeline(elements).to_config()




class FitRange(BaseModel):
    """Start value and search bounds of one fitted parameter.

    Example:
        >>> FitRange(initial_value=3.3e-14, bounds=(1e-14, 1e-13))
    """

    initial_value: float
    bounds: tuple[float, float]


def objective_names(measurements: list[MeasurementRef]) -> list[str]:
    names = [m.name for m in measurements]
    return [m.name if names.count(m.name) == 1 else f"{m.name} ({m.id[:8]})" for m in measurements]


def parameter_fit_pipeline(measurements: list[MeasurementRef], parameters: dict[str, FitRange], model: str) -> dict:
    """A fit of ``parameters`` on ``model``: one CurrentDriven objective per measurement, differential evolution,
    RMSE in volts.

    Example:
        >>> config = parameter_fit_pipeline(refs, {DN: FitRange(initial_value=3e-14, bounds=(1e-14, 1e-13))}, "SPMe")
        >>> config["elements"]["fit"]["cost"]
        {'normalization': 'identity', 'type': 'RMSE'}
    """
    objectives = {
        name: iws.objectives.CurrentDriven(data_input=f"db:{m.id}", options={"model": {"type": model}})
        for name, m in zip(objective_names(measurements), measurements, strict=False)
    }
    fitted = {name: iws.Parameter(name, initial_value=r.initial_value, bounds=tuple(r.bounds))
              for name, r in parameters.items()}
    fit = iws.DataFit(objectives=objectives, parameters=fitted, cost=iws.costs.RMSE(normalization="identity"),
                      optimizer=iws.optimizers.DifferentialEvolution())
    return iws.Pipeline({"fit": fit}).to_config()


def pipeline_from_file(path: str | Path, measurements: list[MeasurementRef]) -> dict:
    """A pipeline config read from YAML or JSON; an objective keyed ``"*"`` becomes one per measurement.

    The ``"*"`` objective is a template: each copy is named after a measurement and reads it as ``db:<id>``.

    Example:
        >>> pipeline_from_file("pipelines/refit-dn.yaml", refs)["elements"]["fit"]["objectives"].keys()
    """
    config = yaml.safe_load(Path(path).read_text())  # YAML is a superset of JSON
    if not isinstance(config, dict):
        raise ParameterSetError(f"Pipeline file {path} must hold a mapping with 'elements'")
    for element in (config.get("elements") or {}).values():
        objectives = element.get("objectives") if isinstance(element, dict) else None
        if isinstance(objectives, dict) and EACH_MEASUREMENT in objectives:
            template = objectives.pop(EACH_MEASUREMENT)
            for name, m in zip(objective_names(measurements), measurements, strict=False):
                objectives[name] = {**template, "data": f"db:{m.id}"}
    return config


def with_validation(config: dict) -> dict:
    """The config with a final ``validation`` element over every data-fit objective (RMSE per objective, V).

    A config that already has a validation element is returned unchanged. The validation's ``summary_stats``
    give each objective's RMSE in the fitted set (``FittedParameterSet.rmse_mv``).

    Example:
        >>> list(with_validation(parameter_fit_pipeline(refs, dn_only, "SPMe"))["elements"])
        ['fit', 'validate']
    """
    elements = config.get("elements") or {}
    if any(isinstance(e, dict) and e.get("element_type") == "validation" for e in elements.values()):
        return config
    objectives: dict[str, Any] = {}
    for element in elements.values():
        if isinstance(element, dict) and element.get("element_type") == "data_fit":
            objectives.update(element.get("objectives") or {})
    if not objectives:
        return config
    validation = {"element_type": "validation", "objectives": objectives,
                  "summary_stats": [iws.costs.RMSE(normalization="identity").to_config()]}
    return {**config, "elements": {**elements, VALIDATION_ELEMENT: validation}}


def refit_recipe(parameters: Optional[dict[str, FitRange]], pipeline_file: Optional[str], model: str) -> dict:
    """What decides a test's pipeline besides its data; a different recipe refits every test.

    Example:
        >>> refit_recipe(None, None, "SPMe")
        {'default': 'ageing refit 1', 'model': 'SPMe'}
    """
    if pipeline_file:
        return {"pipeline_file": hashlib.sha256(Path(pipeline_file).read_bytes()).hexdigest()}
    if parameters:
        return {"parameters": {k: FitRange.model_validate(v).model_dump(mode="json") for k, v in parameters.items()},
                "model": model}
    return {"default": DEFAULT_REFIT, "model": model}
