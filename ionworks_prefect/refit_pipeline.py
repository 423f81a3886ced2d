"""The default ageing refit: one Ionworks pipeline that fits what real ageing moves.

Ageing moves a cell's balance (loss of lithium inventory, loss of active material in each electrode), its
series resistance and its transport. The pipeline fits them in two stages:

1. ``balance_and_kinetics``: on every test at once, against the base set's OCPs, the stoichiometry window (the
   negative electrode's initial concentration, which with the positive one sets the lithium inventory, and both
   active-material fractions), the contact resistance and both particle diffusivities. Fitted together because
   they trade off: a window fitted alone on the lowest-rate test takes up its IR drop and diffusion
   overpotential, and kinetics fitted after it take up the window's error (on data this model made, fitted
   apart the window ended 7 % off and the contact resistance 54 %; fitted together, within 0.1 % and 0.3 %).
2. ``ocp`` then ``ocp_shape``: an entry makes the positive electrode OCP a piecewise-linear function of
   stoichiometry (``PiecewiseInterpolation1D``, its knots at the base OCP at ``OCP_BREAKPOINTS``), and the
   knots are fitted on every test with everything else held: what the base curve misses (each test's
   surface stoichiometries reach their own range: knots fitted at C/5 alone put a 1C test 15 mV off).

The window and kinetics are never fitted against a fitted OCP, so they stay comparable from test to test and
refit to refit (a knotted curve can trade a stretch for another active-material fraction); the knots only
shape the model the fitted set describes. Every element of a pipeline starts from the values its config gives,
not from an earlier element's result, so a refit of the window against the fitted curve would start from the
base set again, far from where the curve was fitted (on a real 10 degC discharge it stopped at 16 mV, against
12 mV for the curve it was given). A cell's later tests hold the curve its first test fitted (``ocp_knots``:
an ``ocp_knots`` entry before ``ocp``, and no ``ocp_shape``), so their models share one electrode curve.
``adapt_ocp=False`` runs stage 1 only.

Each objective reads ``db:<measurement id>``; every test's model starts at the rested voltage its data opens
with and runs at its measured temperature when it has a ``Temperature [degC]`` column. Every fit uses
``ScipyLeastSquares`` on RMSE in volts. Building the config evaluates the base set's OCP at the knots with
PyBaMM (imported on first use); nothing is sent anywhere.

Example:
    >>> data = [RefitData(name="C/10", measurement_id="m1"), RefitData(name="C/2", measurement_id="m2")]
    >>> config = ageing_refit_pipeline(data, model="SPMe")
    >>> list(config["elements"])
    ['balance_and_kinetics', 'ocp', 'ocp_shape']

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
#: Stoichiometries at which the positive OCP is fitted: the NMC window of a full cell and some margin, spaced
#: as the square root of Chen2020's curvature (closest at its step near 0.31, where a full cell rests charged)
#: so the knotted curve misses the base curve by 0.6 mV RMS, 1.6 mV at most (a 0.05 grid: 2.9 and 13 mV, 11 mV
#: at the charged rest, which moves the rested start of every fit).
OCP_BREAKPOINTS = (0.15, 0.175, 0.195, 0.215, 0.23, 0.255, 0.275, 0.29, 0.3, 0.31, 0.335, 0.35, 0.37, 0.4, 0.435,
                   0.48, 0.52, 0.555, 0.585, 0.615, 0.655, 0.735, 0.865, 1.0)  # fmt: skip
BASE_PARAMETER_SET = "Chen2020"
#: The default pipeline's name in fit keys: a new version refits every test once.
DEFAULT_REFIT = "ageing refit 2"
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


#: Drift thresholds of the default refit's kinetic parameters. Fitted with the window on every test, they move
#: by under 2.5 % between tests of a cell whose kinetics did not change (the window by under 0.1 %;
#: tests/test_ageing_refit.py), against 11 % when the window was fitted apart; 10 % leaves a real cycler's
#: noise and temperature its margin.
KINETIC_DRIFT_THRESHOLDS: dict[str, float] = {R_CONTACT: 0.10, DN: 0.10, DP: 0.10}

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
    """One test the refit fits: its objective's name and its measurement.

    Example:
        >>> RefitData(name="C/2 discharge", measurement_id="m1")
    """

    model_config = ConfigDict(frozen=True)

    name: str
    measurement_id: str


@functools.cache
def _base_ocp_knots(base: str) -> tuple[float, ...]:
    import numpy as np
    import pybamm

    values = pybamm.ParameterValues(base)
    symbol = values[OCP_P](pybamm.Vector(np.array(OCP_BREAKPOINTS)))
    return tuple(float(v) for v in np.asarray(values.evaluate(symbol)).ravel())


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
        data: The tests to fit, one objective each.
        model: ``"SPM"``, ``"SPMe"`` or ``"DFN"``, run with a contact resistance.
        base_parameter_set: The PyBaMM set the OCP knots start from (its values at the breakpoints).
        ocp_bounds_v: How far (V) each OCP knot may move from the base OCP.
        adapt_ocp: False keeps the base set's OCPs: no ``ocp`` and ``ocp_shape`` elements.
        ocp_knots: OCP knot values fitted before (a cell's first test): they are entered as they are and not
            fitted again, so the models of a cell's tests share one electrode curve.

    Returns:
        The pipeline config (``iws.Pipeline(...).to_config()``), ready for ``client.pipeline.create``.

    Raises:
        ValueError: ``data`` is empty or two tests share a name.

    Examples:
        >>> config = ageing_refit_pipeline([RefitData(name="C/2", measurement_id="m1")])
        >>> config["elements"]["balance_and_kinetics"]["objectives"]["C/2"]["data"]
        'db:m1'
    """
    if not data:
        raise ValueError("ageing_refit_pipeline needs at least one test")
    names = [d.name for d in data]
    if len(set(names)) != len(names):
        raise ValueError(f"Test names must be unique, got {names}")
    options = {"model": {"type": model, "options": {"contact resistance": "true"}}}

    def data_fit(tests: Sequence[RefitData], ranges: dict[str, tuple[float, tuple[float, float]]]) -> iws.DataFit:
        return iws.DataFit(
            objectives={
                test.name: iws.objectives.CurrentDriven(data_input=f"db:{test.measurement_id}", options=options)
                for test in tests
            },
            parameters={n: iws.Parameter(n, initial_value=v, bounds=b) for n, (v, b) in ranges.items()},
            cost=iws.costs.RMSE(normalization="identity"),
            optimizer=iws.parameter_estimators.ScipyLeastSquares(**LEAST_SQUARES),
        )

    elements: dict[str, Any] = {"balance_and_kinetics": data_fit(data, {**BALANCE_PARAMETERS, **KINETIC_PARAMETERS})}
    if adapt_ocp and ocp_knots:
        elements["ocp_knots"] = iws.direct_entries.DirectEntry(parameters=dict(ocp_knots))
    if adapt_ocp:
        elements["ocp"] = iws.direct_entries.PiecewiseInterpolation1D(
            base_parameter_name=OCP_P, breakpoint_values=list(OCP_BREAKPOINTS), breakpoint_parameter_name=STOICHIOMETRY
        )
    if adapt_ocp and not ocp_knots:
        knots = {_knot(s): (v, (v - ocp_bounds_v, v + ocp_bounds_v))
                 for s, v in zip(OCP_BREAKPOINTS, _base_ocp_knots(base_parameter_set), strict=True)}  # fmt: skip
        elements["ocp_shape"] = data_fit(data, knots)
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
        {'default': 'ageing refit 2', 'model': 'SPMe'}
    """
    if pipeline_file:
        return {"pipeline_file": hashlib.sha256(Path(pipeline_file).read_bytes()).hexdigest()}
    if parameters:
        return {"parameters": {k: FitRange.model_validate(v).model_dump(mode="json") for k, v in parameters.items()},
                "model": model}
    return {"default": DEFAULT_REFIT, "model": model}
