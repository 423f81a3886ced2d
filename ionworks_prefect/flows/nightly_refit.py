"""Nightly refit: fit each new reference performance test of a cell, judge it, publish the cell's trajectory.

Recipe: gather the cell's tests (``gather_cell_tests``) -> read which tests Ionworks already holds a fit for
(their pipelines carry a fit marker, see :mod:`ionworks_prefect.history`) -> build and run one refit pipeline per
new test, concurrently -> rebuild the cell's history -> judge each new fit (fit quality, drift against the first
and the previous test, trend; :mod:`ionworks_prefect.verdicts`) and emit ``ionworks.fit.degraded`` /
``ionworks.parameters.drifted`` -> publish the newest set and the history.

An unchanged night submits nothing: every test already has a fit with its current data and pipeline, so the
run only publishes a short "unchanged since" note and returns the newest set. ``joint=True`` fits all of the
cell's measurements together into one set instead.

Example:
    ```python
    import asyncio
    from ionworks_prefect.flows import nightly_refit

    asyncio.run(nightly_refit(cell={"specification": "NMC811 21700", "instance": "cell-7"}))
    ```
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any, Optional, Union

import ionworks_schema as iws
import yaml
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from ionworks_prefect import (
    CellTarget,
    FittedParameterSet,
    IonworksPrefectError,
    ParameterSetError,
    publish_parameter_set,
    run_pipeline,
)
from ionworks_prefect.artifacts import publish_unchanged
from ionworks_prefect.cell_tests import (
    CellIdentity,
    CellTest,
    MeasurementRef,
    cell_label,
    gather_cell_tests,
    identify_cell,
)
from ionworks_prefect._calls import acall
from ionworks_prefect.credentials import resolve_credentials
from ionworks_prefect.events import emit_fit_verdict, slug
from ionworks_prefect.refit_pipeline import ageing_refit_pipeline, describe_refit_data
from ionworks_prefect.history import fit_key, fit_marker, latest_per_test, list_fit_records, read_fitted_sets
from ionworks_prefect.fleet import fleet_row, publish_fleet_summary
from ionworks_prefect.retries import ionworks_task, rate_limited
from ionworks_prefect.verdicts import FitVerdict, assess_fit

DN = "Negative particle diffusivity [m2.s-1]"
DP = "Positive particle diffusivity [m2.s-1]"
#: Objective key in a pipeline file that stands for "one objective per measurement".
EACH_MEASUREMENT = "*"
VALIDATION_ELEMENT = "validate"
JOINT_TEST = "all tests (joint fit)"


class FitRange(BaseModel):
    """Start value and search bounds of one fitted parameter.

    Example:
        >>> FitRange(initial_value=3.3e-14, bounds=(1e-14, 1e-13))
    """

    initial_value: float
    bounds: tuple[float, float]


#: The default pipeline's name in fit keys: a new version refits every test once.
DEFAULT_REFIT = "ageing refit 1"


class NoMeasurements(IonworksPrefectError):
    """The cell has no time-series measurement to fit."""


class RefitFailed(IonworksPrefectError):
    """At least one test of the cell could not be fitted (the others were fitted and published)."""


class CellRefit(BaseModel):
    """What a night's refit of one cell found: the newest fitted set, its verdict, how many fits were new."""

    cell: CellIdentity
    fitted: FittedParameterSet = Field(description="The newest test's fitted set (also on an unchanged night).")
    verdict: FitVerdict = Field(description="That set judged against the cell's first and previous tests.")
    new_fits: int = Field(description="Pipelines fitted this run (0 on an unchanged night).")
    tests: int = Field(description="Fitted tests in the cell's history.")


def _objective_names(measurements: list[MeasurementRef]) -> list[str]:
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
        for name, m in zip(_objective_names(measurements), measurements, strict=False)
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
            for name, m in zip(_objective_names(measurements), measurements, strict=False):
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


@ionworks_task(name="Build refit pipeline", description="The pipeline one test is fitted with.")
async def build_refit_pipeline(test: CellTest, parameters: Optional[dict[str, FitRange]], pipeline_file: Optional[str],
                               model: str, credentials: Optional[str] = None) -> dict:
    """The pipeline for one test: a pipeline file, the given parameters, or the default ageing refit
    (:func:`ageing_refit_pipeline`, which reads each measurement's steps to find the lowest-rate one); with a
    final validation element for the RMSE per objective."""
    if pipeline_file:
        config = pipeline_from_file(pipeline_file, test.measurements)
    elif parameters:
        config = parameter_fit_pipeline(test.measurements, parameters, model)
    else:
        client = resolve_credentials(credentials).get_client()
        data = await asyncio.gather(*(acall("read measurement steps", describe_refit_data, client, m.id, name)
                                      for name, m in zip(_objective_names(test.measurements), test.measurements,
                                                         strict=True)))
        config = await asyncio.to_thread(ageing_refit_pipeline, data, model=model)
    return with_validation(config)


def joint_test(tests: list[CellTest]) -> CellTest:
    """All of a cell's tests as one, for a joint fit (its time is the newest test's)."""
    times = [t.tested_at for t in tests if t.tested_at is not None]
    cycles = [t.equivalent_full_cycles for t in tests if t.equivalent_full_cycles is not None]
    return CellTest(cell_instance_id=tests[0].cell_instance_id, label=JOINT_TEST,
                    measurements=[m for t in tests for m in t.measurements], tested_at=max(times) if times else None,
                    equivalent_full_cycles=max(cycles) if cycles else None)


@ionworks_task(name="Read refit history",
               description="The cell's per-test refit pipelines in Ionworks, and which tests are fitted already.")
def fitted_keys(cell_instance_id: str, credentials: Optional[str] = None) -> dict[str, str]:
    """Fit key -> pipeline id of every successful refit of the cell (the tests already fitted)."""
    client = resolve_credentials(credentials).get_client()
    return {r.fit_key: r.pipeline_id for r in list_fit_records(client, cell_instance_id) if r.succeeded}


@ionworks_task(name="Read fitted history", description="The fitted set of every test of the cell, oldest first.")
def fitted_history(cell_instance_id: str, label: str, known: dict[str, FittedParameterSet],
                   credentials: Optional[str] = None) -> list[FittedParameterSet]:
    """The newest successful fit of each test, read from Ionworks (``known`` sets by pipeline id are reused)."""
    client = resolve_credentials(credentials).get_client()
    return read_fitted_sets(client, latest_per_test(list_fit_records(client, cell_instance_id)), label, known)


@task(name="Judge fits", cache_policy=NO_CACHE)
def judge_fits(history: list[FittedParameterSet], new_pipeline_ids: list[str], cell_instance_id: str,
               drift_threshold: float, rmse_threshold_mv: float) -> list[FitVerdict]:
    """A verdict for each new fit against the history before it; emits the degraded and drifted events."""
    verdicts = []
    for index, fitted in enumerate(history):
        if fitted.pipeline_id in new_pipeline_ids:
            verdict = assess_fit(history[: index + 1], drift_threshold=drift_threshold,
                                 rmse_threshold_mv=rmse_threshold_mv)
            emit_fit_verdict(cell_instance_id, verdict)
            verdicts.append(verdict)
    return verdicts


@task(name="Write parameter files", cache_policy=NO_CACHE)
def write_parameter_files(fitted: FittedParameterSet, output_dir: str, model: str) -> list[str]:
    """Write the set as JSON and, where BPX can hold every fitted parameter, as BPX.

    Example:
        >>> write_parameter_files(fitted, "out", "SPMe")
        ['out/nmc811-cell-7.json', 'out/nmc811-cell-7.bpx.json']
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / slug(fitted.cell or fitted.pipeline_id)
    json_path = stem.with_name(stem.name + ".json")
    json_path.write_text(fitted.to_json())
    written = [str(json_path)]
    try:
        bpx_path = stem.with_name(stem.name + ".bpx.json")
        bpx_path.write_text(json.dumps(fitted.to_bpx(model=model), indent=2))
        written.append(str(bpx_path))
    except ParameterSetError as exc:
        get_run_logger().warning("No BPX file: %s", exc)
    return written


def _run_name() -> str:
    cell = flow_run.parameters.get("cell")
    return f"refit {cell_label(CellTarget(**cell) if isinstance(cell, dict) else cell)}"


async def _fit(test: CellTest, recipe: dict, build: dict[str, Any], label: str, credentials: Optional[str],
               max_wait_seconds: float) -> FittedParameterSet:
    config = await build_refit_pipeline(test, **build, credentials=credentials)
    marker = fit_marker(test, fit_key(test, recipe))
    submitted = {**config, "name": f"Refit {label} · {test.label}"[:200],
                 "description": f"Refit of {label}, test {test.label} {marker}"}
    result = await run_pipeline(submitted, credentials, cell=test.cell_instance_id, max_wait_seconds=max_wait_seconds)
    return FittedParameterSet.from_pipeline_result(result, cell=label, config=config, test=test.label,
                                                   tested_at=test.tested_at,
                                                   equivalent_full_cycles=test.equivalent_full_cycles)


@flow(name="nightly-refit", flow_run_name=_run_name,
      description="Fit each new reference performance test of a cell; judge it; publish the cell's trajectory.")
async def nightly_refit(
    cell: Union[str, CellTarget],
    parameters: Optional[dict[str, FitRange]] = None,
    pipeline_file: Optional[str] = None,
    model: str = "SPMe",
    joint: bool = False,
    drift_threshold: float = 0.05,
    rmse_threshold_mv: float = 20.0,
    output_dir: Optional[str] = None,
    credentials: Optional[str] = None,
    max_wait_seconds: float = 3600.0,
    fleet_summary: bool = True,
    rate_limit: Optional[str] = None,
) -> CellRefit:
    """Refit the tests of one cell that have no fit yet, and publish the cell's fitted trajectory.

    Args:
        cell: A cell instance id, or ``{"specification": ..., "instance": ...}`` names.
        parameters: Parameters to fit (start and bounds) instead of the default refit.
        pipeline_file: A YAML/JSON pipeline instead; an objective keyed ``"*"`` becomes one per measurement.
        model: The model of the default refit's objectives (``SPM``, ``SPMe``, ``DFN``).
        joint: Fit all of the cell's measurements together into one set, instead of one set per test.
        drift_threshold: Relative change (against the first or the previous test) that flags a parameter.
        rmse_threshold_mv: Worst objective RMSE (mV) above which a fit is flagged as degraded.
        output_dir: Also write the newest set as JSON and BPX, and the fit plot, there.
        credentials: A saved ``IonworksCredentials`` block's name; the ``IONWORKS_*`` environment without one.
        max_wait_seconds: How long to wait for each refit pipeline.
        fleet_summary: Update the cell's row of the ``fleet-<specification>`` view (a fleet refit publishes the
            whole view once instead).
        rate_limit: A Prefect rate limit every Ionworks task run takes a slot of (a fleet refit sets it).

    Returns:
        A :class:`CellRefit`: the cell, the newest test's fitted set and verdict, and how many fits were new.

    Raises:
        NoMeasurements: The cell has no processed time-series measurement.
        RefitFailed: Some tests could not be fitted; the others were fitted and published first.
        IonworksRequestError: Ionworks refused a request.

    Examples:
        ```python
        import asyncio
        from prefect import flow
        from ionworks_prefect.flows import nightly_refit

        @flow
        async def refit_my_cells():
            for instance in ("cell-7", "cell-8"):
                refit = await nightly_refit(cell={"specification": "NMC811 21700", "instance": instance})
                print(refit.fitted.test, refit.fitted.values, refit.fitted.rmse_mv, refit.verdict.verdict)

        asyncio.run(refit_my_cells())
        ```
    """
    logger = get_run_logger()
    identity = identify_cell(cell, credentials)
    if identity is None:
        raise NoMeasurements(f"No cell {cell_label(cell)!r} in Ionworks, so no measurement to fit")
    label = identity.label
    with rate_limited(rate_limit):
        tests = gather_cell_tests(identity.instance_id, credentials)
        if not tests:
            raise NoMeasurements(f"No processed time-series measurement found for {label!r}")
        if joint:
            tests = [joint_test(tests)]
        recipe = refit_recipe(parameters, pipeline_file, model)
        done = fitted_keys(identity.instance_id, credentials)
        todo = [t for t in tests if fit_key(t, recipe) not in done]
        if todo:
            logger.info("Refitting %d new test(s) of %s: %s", len(todo), label, ", ".join(t.label for t in todo))
        else:
            logger.info("All %d test(s) of %s are fitted already; nothing submitted.", len(tests), label)
        build = {"parameters": parameters, "pipeline_file": pipeline_file, "model": model}
        outcomes = await asyncio.gather(*(_fit(t, recipe, build, label, credentials, max_wait_seconds) for t in todo),
                                        return_exceptions=True)
        fitted = {s.pipeline_id: s for s in outcomes if isinstance(s, FittedParameterSet)}
        failures = [f"{t.label}: {s}" for t, s in zip(todo, outcomes, strict=True) if isinstance(s, BaseException)]
        history = fitted_history(identity.instance_id, label, fitted, credentials)
        if not history:
            raise RefitFailed(f"No test of {label} could be fitted: " + "; ".join(failures))
        judged = judge_fits(history, list(fitted), identity.instance_id, drift_threshold, rmse_threshold_mv)
        newest = history[-1]
        verdict = next((v for v in judged if v.pipeline_id == newest.pipeline_id), None) or assess_fit(
            history, drift_threshold=drift_threshold, rmse_threshold_mv=rmse_threshold_mv)
        if fitted:
            publish_parameter_set(newest, credentials, history=history[:-1], drift_threshold=drift_threshold,
                                  rmse_threshold_mv=rmse_threshold_mv, image_dir=output_dir)
            if output_dir:
                write_parameter_files(newest, output_dir, model)
        else:
            publish_unchanged(newest)
        if fleet_summary:
            publish_fleet_summary(identity.specification_name,
                                  {identity.instance_name: fleet_row(identity.instance_name, newest, verdict)})
    if failures:
        raise RefitFailed(f"{len(failures)} of {len(todo)} test(s) of {label} could not be fitted: "
                          + "; ".join(failures))
    return CellRefit(cell=identity, fitted=newest, verdict=verdict, new_fits=len(fitted), tests=len(history))
